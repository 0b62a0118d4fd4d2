"""Word and character error rates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance between two sequences."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


@dataclass
class ErrorRates:
    """Accumulated edit distances over a test set."""

    word_errors: int = 0
    words: int = 0
    char_errors: int = 0
    chars: int = 0

    def add(self, reference: str, hypothesis: str) -> None:
        self.word_errors += edit_distance(reference.split(), hypothesis.split())
        self.words += len(reference.split())
        self.char_errors += edit_distance(reference, hypothesis)
        self.chars += len(reference)

    @property
    def wer(self) -> float:
        return self.word_errors / max(self.words, 1)

    @property
    def cer(self) -> float:
        return self.char_errors / max(self.chars, 1)
