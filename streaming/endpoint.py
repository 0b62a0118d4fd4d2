"""Endpoint detection from the greedy (argmax) CTC tokens of each output frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_ROUNDING = 1e-9  # seconds


@dataclass(frozen=True)
class EndpointConfig:
    """When an utterance ends; all durations in seconds."""

    trailing_silence: float = 0.8  # blank output after speech that ends an utterance
    silence_timeout: float = 5.0  # only-blank output (no speech yet) after which state is reset
    max_utterance: float = 20.0  # an utterance this long is ended anyway


@dataclass
class EndpointDetector:
    """Counts an utterance's frames and trailing blank frames, a chunk of argmaxes at a time."""

    config: EndpointConfig
    frame_seconds: float
    blank_id: int
    frames: int = 0  # output frames of the utterance so far
    trailing_blanks: int = 0  # blank frames since the last non-blank one (or since the start)
    speech: bool = False  # whether any non-blank frame was seen

    def update(self, best: np.ndarray) -> None:
        """Take the argmax tokens `[T]` of the utterance's next frames."""
        spoken = np.flatnonzero(best != self.blank_id)
        self.frames += len(best)
        if spoken.size:
            self.speech = True
            self.trailing_blanks = len(best) - 1 - int(spoken[-1])
        else:
            self.trailing_blanks += len(best)

    def _lasted(self, frames: int, seconds: float) -> bool:
        """Whether `frames` output frames span `seconds` (robust to float rounding)."""
        return frames * self.frame_seconds >= seconds - _ROUNDING

    @property
    def is_endpoint(self) -> bool:
        """Speech followed by `trailing_silence` of blanks, or an utterance of `max_utterance`."""
        config = self.config
        return (self._lasted(self.frames, config.max_utterance)
                or (self.speech and self._lasted(self.trailing_blanks, config.trailing_silence)))

    @property
    def is_silence_timeout(self) -> bool:
        """Nothing but blanks for `silence_timeout`: the state may be dropped without a result."""
        return not self.speech and self._lasted(self.frames, self.config.silence_timeout)
