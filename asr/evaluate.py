"""Scoring a recogniser on a test set: WER, CER and real-time factor."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tqdm import tqdm

from asr.audio import SAMPLE_RATE, load_audio
from asr.corpora import Utterance
from asr.decode import Transcript
from asr.metrics import ErrorRates


class Transcriber(Protocol):
    def transcribe(self, audio: np.ndarray) -> Transcript: ...


@dataclass
class Report:
    rates: ErrorRates = field(default_factory=ErrorRates)
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0
    pairs: list[dict] = field(default_factory=list)

    @property
    def rtf(self) -> float:
        return self.compute_seconds / max(self.audio_seconds, 1e-9)

    def summary(self) -> str:
        return (f"utterances {len(self.pairs)}  audio {self.audio_seconds / 3600:.2f} h  "
                f"WER {self.rates.wer:.2%}  CER {self.rates.cer:.2%}  RTF {self.rtf:.4f}")

    def write_pairs(self, path: str) -> None:
        """Each utterance's audio, reference and hypothesis, as JSON lines."""
        with open(path, "w") as f:
            for pair in self.pairs:
                f.write(json.dumps(pair) + "\n")


def evaluate(transcriber: Transcriber, utterances: list[Utterance]) -> Report:
    """Transcribe each utterance (one at a time, as a user would) and score it."""
    report = Report()
    for utterance in tqdm(utterances, unit="utt", file=sys.stderr):
        audio = load_audio(utterance.audio)
        started = time.perf_counter()
        hypothesis = transcriber.transcribe(audio).text
        report.compute_seconds += time.perf_counter() - started
        report.audio_seconds += len(audio) / SAMPLE_RATE
        report.rates.add(utterance.text, hypothesis)
        report.pairs.append({"audio": str(utterance.audio), "reference": utterance.text,
                             "hypothesis": hypothesis})
    return report
