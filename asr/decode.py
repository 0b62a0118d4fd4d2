"""Greedy CTC decoding, word timings and word confidences from CTC frames."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from asr.text import Vocabulary


@dataclass
class Word:
    word: str
    start: float  # seconds
    end: float
    # confidence 0-1: the lowest, over the word's characters, of the CTC posterior of the
    # character at the frame that emits it; None where the decoder had no log-probabilities
    conf: float | None = None


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
                      offset: float = 0.0, log_probs: np.ndarray | None = None) -> Transcript:
    """Group `(token, frame)` pairs into words with start/end times in seconds, and with
    `log_probs` (the `[T, V]` frames the tokens index) each word's confidence (`Word.conf`).

    A word starts at its first character's frame and ends one frame after its last.
    """
    words: list[Word] = []
    chars: list[str] = []
    posteriors: list[float] = []
    first = last = 0
    for token, frame in [*tokens, (vocab.space_id, -1)]:
        if token == vocab.space_id:
            if chars:
                conf = round(min(posteriors), 3) if posteriors else None
                words.append(Word("".join(chars), round(offset + first * frame_seconds, 3),
                                  round(offset + (last + 1) * frame_seconds, 3), conf))
                chars, posteriors = [], []
            continue
        if not chars:
            first = frame
        chars.append(vocab.tokens[token])
        if log_probs is not None:
            posteriors.append(math.exp(float(log_probs[frame, token])))
        last = frame
    return Transcript(" ".join(w.word for w in words), words)


def greedy_decode(log_probs: np.ndarray, vocab: Vocabulary, frame_seconds: float,
                  offset: float = 0.0) -> Transcript:
    """Best-path transcript of `[T, V]` CTC log-probabilities."""
    return words_from_tokens(greedy_tokens(log_probs, vocab.blank_id), vocab, frame_seconds, offset,
                             log_probs)
