"""Fixtures shared by the streaming client and microphone tests, a private model cache, and a
summary of why tests were skipped (README.md, "Tests", says what each needs)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from common import EXAMPLE

from asr.defaults import STREAMING_MODEL

PAD_SECONDS = 0.5


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Models exported and lexicons cached by the tests go to a temporary cache, not the user's
    (`asr.defaults.cache_dir`); subprocesses inherit it."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real utterance as a 16 kHz mono 16-bit WAV with 0.5 s of silence before and after."""
    from asr.audio import SAMPLE_RATE, load_audio

    pad = np.zeros(round(PAD_SECONDS * SAMPLE_RATE), dtype=np.float32)
    path = tmp_path_factory.mktemp("speech") / "utterance.wav"
    # the README's example: recognised exactly, so a capture offset or resampling does not
    # turn one word into another
    sf.write(path, np.concatenate([pad, load_audio(EXAMPLE), pad]), SAMPLE_RATE,
             subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def streaming_model() -> Path:
    """The shipped fp32 streaming ONNX model (skips while it is not there)."""
    if not STREAMING_MODEL.is_file():
        pytest.skip(f"streaming model not shipped yet: {STREAMING_MODEL}")
    return STREAMING_MODEL


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per reason that tests were skipped, with how many."""
    reasons = Counter(skip_reason(report) for report in terminalreporter.stats.get("skipped", []))
    if reasons:
        terminalreporter.section("why tests were skipped")
        for reason, count in reasons.most_common():
            terminalreporter.write_line(f"{count:4d}  {reason}")


def skip_reason(report: pytest.TestReport) -> str:
    """The message a skipped test's report carries."""
    if isinstance(report.longrepr, tuple):  # (path, line, "Skipped: reason")
        return report.longrepr[2].removeprefix("Skipped: ")
    return str(report.longrepr)
