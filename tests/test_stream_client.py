"""`scripts/stream_client.py`, the dependency-free example client, against the engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.defaults import STREAMING_MODEL, STREAMING_MODEL_INT8
from streaming.engine import StreamingRecognizer

CLIENT = Path(__file__).resolve().parents[1] / "scripts" / "stream_client.py"


def run_client(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLIENT), *map(str, args)], capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("model", [STREAMING_MODEL, STREAMING_MODEL_INT8], ids=["fp32", "int8"])
@pytest.mark.parametrize("chunk_ms", [None, 100])
def test_client_matches_engine(model: Path, chunk_ms: int | None, speech_wav: Path) -> None:
    if not model.is_file():
        pytest.skip(f"streaming model not shipped yet: {model}")
    # The same chunking on both sides: int8 activations are quantised per run, so its output
    # depends (slightly) on how the audio is cut.
    chunk_samples = None if chunk_ms is None else chunk_ms * 16
    recognizer = StreamingRecognizer(model, chunk_samples=chunk_samples, lm=None)  # greedy
    expected = " ".join(r.text for r in recognizer.transcribe_file(speech_wav))
    assert expected, "the model recognised nothing in a clear utterance"
    result = run_client(model, speech_wav, *(["--chunk-ms", chunk_ms] if chunk_ms else []))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.parametrize(("rate", "subtype", "channels"), [
    (8000, "PCM_16", 1), (16000, "PCM_24", 1), (16000, "PCM_16", 2)])
def test_client_rejects_other_wavs(tmp_path: Path, streaming_model: Path, rate: int,
                                   subtype: str, channels: int) -> None:
    wav = tmp_path / "other.wav"
    sf.write(wav, np.zeros((rate // 2, channels), dtype=np.float32), rate, subtype=subtype)
    result = run_client(streaming_model, wav)
    assert result.returncode != 0
    assert "need a 16-bit mono WAV at 16000 Hz" in result.stderr
    assert result.stdout == ""


def test_client_rejects_non_wav(tmp_path: Path, streaming_model: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("not audio")
    result = run_client(streaming_model, path)
    assert result.returncode != 0 and "not a readable WAV file" in result.stderr
