"""Fixtures shared by the streaming client and microphone tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from common import EXAMPLE

from asr.defaults import STREAMING_MODEL

PAD_SECONDS = 0.5


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
