"""Scoring a recogniser on a test set: WER, CER and real-time factor."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tqdm import tqdm

from asr.audio import SAMPLE_RATE, AudioError, load_audio
from asr.corpora import Utterance
from asr.decode import Transcript
from asr.formats import printable
from asr.metrics import ErrorRates


class Transcriber(Protocol):
    def transcribe(self, audio: np.ndarray) -> Transcript: ...


@dataclass
class Report:
    rates: ErrorRates = field(default_factory=ErrorRates)
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0
    pairs: list[dict] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # why each left-out utterance failed

    @property
    def rtf(self) -> float:
        return self.compute_seconds / max(self.audio_seconds, 1e-9)

    def summary(self) -> str:
        left_out = f"  unreadable {len(self.unreadable)} (left out)" if self.unreadable else ""
        return (f"utterances {len(self.pairs)}{left_out}  audio "
                f"{format_duration(self.audio_seconds)}  WER {self.rates.wer:.2%}  "
                f"CER {self.rates.cer:.2%}  RTF {self.rtf:.4f}")

    def write_pairs(self, path: str) -> None:
        """Each utterance's audio, reference and hypothesis, as JSON lines."""
        with open(path, "w") as f:
            for pair in self.pairs:
                f.write(json.dumps(pair) + "\n")


def format_duration(seconds: float) -> str:
    """`12.3 s`, `4.5 min` or `1.25 h`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def evaluate(transcriber: Transcriber, utterances: list[Utterance]) -> Report:
    """Transcribe each utterance (one at a time, as a user would) and score it; an utterance
    whose audio can't be read is left out of the scores and listed in `Report.unreadable`."""
    report = Report()
    for utterance in tqdm(utterances, unit="utt", file=sys.stderr,
                          disable=not sys.stderr.isatty()):
        try:
            audio = load_audio(utterance.audio)
        except AudioError as error:
            report.unreadable.append(str(error))
            continue
        started = time.perf_counter()
        hypothesis = transcriber.transcribe(audio).text
        report.compute_seconds += time.perf_counter() - started
        report.audio_seconds += len(audio) / SAMPLE_RATE
        report.rates.add(utterance.text, hypothesis)
        report.pairs.append({"audio": printable(str(utterance.audio)), "reference": utterance.text,
                             "hypothesis": hypothesis})
    return report
