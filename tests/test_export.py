"""`asr export` and the shipped streaming ONNX models: contract, parity, int8 agreement."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from common import EXAMPLE, shared_utterances

from asr.audio import load_audio
from asr.checkpoint import save_model
from asr.defaults import OFFLINE_MODEL_TYPE, STREAMING_MODEL, STREAMING_MODEL_INT8
from asr.metrics import ErrorRates
from asr.model import CTCModel, ModelDims
from export.onnx_export import FP32_NAME, INT8_NAME
from export.parity import max_abs_diff, pad_to_steps, run_chunks
from streaming.engine import StreamingRecognizer, onnx_session

INT8_MAX_CER = 0.15  # int8 greedy transcripts against fp32's, over the test utterances
# int8 log-prob error (RMS) as a fraction of how far the audio moves the fp32 log-probs: a model
# that ignored or misaligned the audio would score 1 or more
INT8_MAX_RELATIVE_ERROR = 0.25
FP32_MAX_ABS_DIFF = 1e-4  # the fp32 graph computes what PyTorch computes, to rounding
METADATA_KEYS = {"model_type", "version", "vocabulary", "blank_id", "sample_rate", "hop_samples",
                 "frame_seconds", "recommended_chunk_samples", "lookahead_samples",
                 "state_names", "feature_config", "model_dims"}

shipped = pytest.mark.skipif(not STREAMING_MODEL.is_file(), reason="no bundled streaming model")


def relative_error(approx: np.ndarray, exact: np.ndarray) -> float:
    """RMS of `approx - exact` over the RMS of `exact` about each token's mean over time, for
    `[T, V]` log-probs: the error next to the part of the output that the audio decides."""
    driven = exact - exact.mean(axis=0, keepdims=True)
    return float(np.sqrt(np.mean((approx - exact) ** 2) / np.mean(driven**2)))


def test_export_cli_writes_both_models_and_checks_parity(tmp_path):
    torch.manual_seed(0)
    model = CTCModel(ModelDims(bidirectional=False, hidden=48, layers=2))
    save_model(model, tmp_path / "m.pt")
    out = tmp_path / "onnx"
    result = subprocess.run([sys.executable, "-m", "asr", "export", str(tmp_path / "m.pt"),
                             "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    fp32_line, int8_line = result.stdout.splitlines()
    assert FP32_NAME in fp32_line and float(fp32_line.rsplit(" ", 1)[1]) < FP32_MAX_ABS_DIFF
    # the int8 line's max |diff| is a report: a maximum over single log-probs of noise hangs on
    # the CPU's int8 kernels (onnxruntime's u8s8 products saturate on AVX2 without VNNI)
    assert INT8_NAME in int8_line
    assert (out / INT8_NAME).stat().st_size < (out / FP32_NAME).stat().st_size
    audio = pad_to_steps(load_audio(EXAMPLE), model)
    hop = model.features.hop_length
    fp32, int8 = (run_chunks(onnx_session(out / name), audio, [hop, 7 * hop, 25 * hop])
                  for name in (FP32_NAME, INT8_NAME))
    assert relative_error(int8, fp32) < INT8_MAX_RELATIVE_ERROR


def test_export_of_a_bidirectional_model_is_an_offline_model(tmp_path):
    save_model(CTCModel(ModelDims(hidden=16, layers=1)), tmp_path / "bi.pt")
    result = subprocess.run([sys.executable, "-m", "asr", "export", str(tmp_path / "bi.pt"),
                             "--out", str(tmp_path), "--no-int8"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / FP32_NAME)).metadata_props}
    assert meta["model_type"] == OFFLINE_MODEL_TYPE


@shipped
@pytest.mark.parametrize("path", [STREAMING_MODEL, STREAMING_MODEL_INT8])
def test_shipped_model_contract(path):
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert set(meta) >= METADATA_KEYS
    vocabulary = json.loads(meta["vocabulary"])
    assert vocabulary[int(meta["blank_id"])] == "<blank>" and len(vocabulary) == 29
    assert int(meta["sample_rate"]) == 16000 and int(meta["hop_samples"]) == 160
    assert int(meta["recommended_chunk_samples"]) % 160 == 0
    inputs = {i.name for i in proto.graph.input}
    outputs = {o.name for o in proto.graph.output}
    states = {f"state_{n}" for n in json.loads(meta["state_names"])}
    assert inputs == {"audio"} | states
    assert outputs == {"log_probs"} | {f"next_{s}" for s in states}


@shipped
def test_shipped_fp32_model_chunked_equals_whole():
    audio = load_audio(shared_utterances("cathy", 1)[0].audio)
    audio = np.pad(audio, (0, (-len(audio)) % 480)).astype(np.float32)
    session = onnx_session(STREAMING_MODEL)
    whole = run_chunks(session, audio, [len(audio)])
    for sizes in ([160], [480, 1600, 320], [2560], [7 * 160, 33 * 160]):
        assert max_abs_diff(run_chunks(session, audio, sizes), whole) < 1e-4, sizes


@shipped
def test_int8_transcripts_agree_with_fp32():
    utterances = shared_utterances("an4", 10) + shared_utterances("speechocean762", 10)
    fp32, int8 = StreamingRecognizer(STREAMING_MODEL), StreamingRecognizer(STREAMING_MODEL_INT8)
    agreement = ErrorRates()
    for utterance in utterances:
        audio = load_audio(utterance.audio)
        agreement.add(fp32.transcribe(audio).text, int8.transcribe(audio).text)
    assert agreement.cer < INT8_MAX_CER, agreement
