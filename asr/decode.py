"""Greedy CTC decoding and word timings from CTC frames."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from asr.text import Vocabulary


@dataclass
class Word:
    word: str
    start: float  # seconds
    end: float


@dataclass
class Transcript:
    text: str
    words: list[Word] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def greedy_tokens(log_probs: np.ndarray, blank_id: int) -> list[tuple[int, int]]:
    """Best path of `[T, V]` log-probabilities: `(token, frame)` pairs, repeats collapsed and
    blanks dropped; `frame` is the first frame of each emitted token."""
    best = np.asarray(log_probs).argmax(axis=-1)
    keep = best != blank_id
    keep[1:] &= best[1:] != best[:-1]
    frames = np.flatnonzero(keep)
    return [(int(best[t]), int(t)) for t in frames]


def words_from_tokens(tokens: list[tuple[int, int]], vocab: Vocabulary, frame_seconds: float,
                      offset: float = 0.0) -> Transcript:
    """Group `(token, frame)` pairs into words with start/end times in seconds.

    A word starts at its first character's frame and ends one frame after its last.
    """
    words: list[Word] = []
    chars: list[str] = []
    first = last = 0
    for token, frame in [*tokens, (vocab.space_id, -1)]:
        if token == vocab.space_id:
            if chars:
                words.append(Word("".join(chars), round(offset + first * frame_seconds, 3),
                                  round(offset + (last + 1) * frame_seconds, 3)))
                chars = []
            continue
        if not chars:
            first = frame
        chars.append(vocab.tokens[token])
        last = frame
    return Transcript(" ".join(w.word for w in words), words)


def greedy_decode(log_probs: np.ndarray, vocab: Vocabulary, frame_seconds: float,
                  offset: float = 0.0) -> Transcript:
    """Best-path transcript of `[T, V]` CTC log-probabilities."""
    return words_from_tokens(greedy_tokens(log_probs, vocab.blank_id), vocab, frame_seconds, offset)
