"""The offline `Recognizer` on onnxruntime: the bundled ONNX pair against the PyTorch model it
was exported from, a model.pt run through a cached export, one set of defaults, bad models."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from common import EXAMPLE

from asr.audio import load_audio
from asr.beam import BeamSearchDecoder
from asr.corpora import read_corpus
from asr.defaults import (
    LANGUAGE_MODEL,
    OFFLINE_MODEL,
    OFFLINE_ONNX,
    OFFLINE_ONNX_INT8,
    SHARED_SPEECH,
    STREAMING_MODEL,
    cache_dir,
)
from asr.metrics import ErrorRates
from asr.transcribe import Recognizer

NATIVE_DEV = SHARED_SPEECH / "native_dev.jsonl"
EXAMPLE_TEXT = "he could not see himself"
INT8_MAX_CER = 0.10  # int8 (beam + LM) against fp32: 5.7% on dev_native, 8.0% on these 40

pytestmark = pytest.mark.skipif(not OFFLINE_ONNX.is_file(), reason="no bundled offline model")


@pytest.fixture(scope="module")
def dev_audio() -> list[np.ndarray]:
    if not NATIVE_DEV.is_file():
        pytest.skip(f"native dev set not found at {NATIVE_DEV}")
    return [load_audio(u.audio) for u in read_corpus(NATIVE_DEV)[:40]]


def test_defaults_are_the_bundled_model_and_lm():
    recognizer = Recognizer()
    assert recognizer.beam is not None and recognizer.beam.lm_path == LANGUAGE_MODEL
    assert Recognizer(lm=None).beam is None
    assert recognizer.transcribe(load_audio(EXAMPLE)).text == EXAMPLE_TEXT


def test_the_onnx_model_gives_the_pytorch_models_transcripts(dev_audio):
    """The shipped fp32 ONNX model against the checkpoint it was exported from, both decoded
    by the same beam search with the bundled LM: the same transcripts."""
    pytest.importorskip("torch")
    from asr.checkpoint import load_model
    from export.parity import torch_log_probs

    model = load_model(OFFLINE_MODEL)
    beam = BeamSearchDecoder(model.vocab, LANGUAGE_MODEL)
    recognizer = Recognizer()
    for audio in [load_audio(EXAMPLE), *dev_audio]:
        expected = beam.decode(torch_log_probs(model, audio), model.ensemble_frame_seconds).text
        assert recognizer.transcribe(audio).text == expected


def test_int8_is_close_to_fp32(dev_audio):
    fp32, int8 = Recognizer(), Recognizer(OFFLINE_ONNX_INT8)
    assert int8.transcribe(load_audio(EXAMPLE)).text == EXAMPLE_TEXT
    rates = ErrorRates()
    for a, b in zip(fp32.transcribe_many(dev_audio), int8.transcribe_many(dev_audio),
                    strict=True):
        rates.add(a.text, b.text)
    assert rates.cer <= INT8_MAX_CER


def test_a_checkpoint_runs_through_an_export_made_once(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    audio = load_audio(EXAMPLE)
    expected = Recognizer(lm=None).transcribe(audio)
    assert Recognizer(OFFLINE_MODEL, lm=None).transcribe(audio) == expected
    (export,) = cache_dir().glob("offline-*.onnx")
    made = export.stat().st_mtime_ns
    assert Recognizer(OFFLINE_MODEL, lm=None).transcribe(audio) == expected
    assert export.stat().st_mtime_ns == made


@pytest.mark.parametrize("threads", [2, 0])
def test_threads_change_nothing(dev_audio, threads):
    recordings = dev_audio[:8]
    assert (Recognizer(threads=threads).transcribe_many(recordings)
            == Recognizer(threads=1).transcribe_many(recordings))


def test_models_that_are_not_offline_models_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not an offline model"):
        Recognizer(STREAMING_MODEL)
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        Recognizer(garbage)
    with pytest.raises(FileNotFoundError, match="model not found"):
        Recognizer(tmp_path / "missing.onnx")
    with pytest.raises(FileNotFoundError, match="language model not found"):
        Recognizer(lm="lm.bin")


def test_asr_export_of_a_bidirectional_model_runs_in_asr_transcribe(tmp_path):
    """`asr export` of the bundled checkpoint writes an offline ONNX pair that `asr transcribe
    --model` runs, giving the bundled ONNX model's output."""
    pytest.importorskip("torch")

    def asr(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "asr", *args], capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    printed = asr("export", str(OFFLINE_MODEL), "--out", str(tmp_path))
    assert "offline batch vs PyTorch" in printed
    for name, bundled in (("model.onnx", OFFLINE_ONNX), ("model.int8.onnx", OFFLINE_ONNX_INT8)):
        assert (asr("transcribe", str(EXAMPLE), "--format", "jsonl", "--model",
                    str(tmp_path / name))
                == asr("transcribe", str(EXAMPLE), "--format", "jsonl", "--model", str(bundled)))
