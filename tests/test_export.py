"""`asr export` and the shipped streaming ONNX models: contract, parity, int8 agreement."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from common import shared_utterances

from asr.audio import load_audio
from asr.checkpoint import save_model
from asr.defaults import STREAMING_MODEL, STREAMING_MODEL_INT8
from asr.metrics import ErrorRates
from asr.model import CTCModel, ModelDims
from export.parity import max_abs_diff, run_chunks
from streaming.engine import StreamingRecognizer, onnx_session

INT8_MAX_CER = 0.15  # int8 greedy transcripts against fp32's, over the test utterances
METADATA_KEYS = {"model_type", "version", "vocabulary", "blank_id", "sample_rate", "hop_samples",
                 "frame_seconds", "recommended_chunk_samples", "lookahead_samples",
                 "state_names", "feature_config", "model_dims"}

shipped = pytest.mark.skipif(not STREAMING_MODEL.is_file(), reason="no bundled streaming model")


def test_export_cli_writes_both_models_and_checks_parity(tmp_path):
    torch.manual_seed(0)
    save_model(CTCModel(ModelDims(bidirectional=False, hidden=48, layers=2)), tmp_path / "m.pt")
    result = subprocess.run([sys.executable, "-m", "asr", "export", str(tmp_path / "m.pt"),
                             "--out", str(tmp_path / "onnx")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    diffs = [float(line.rsplit(" ", 1)[1]) for line in result.stdout.splitlines()]
    assert len(diffs) == 2 and diffs[0] < 1e-4 and diffs[1] < 0.05
    assert (tmp_path / "onnx" / "model.int8.onnx").stat().st_size < (
        tmp_path / "onnx" / "model.onnx").stat().st_size


def test_export_refuses_a_bidirectional_model(tmp_path):
    save_model(CTCModel(ModelDims(hidden=16, layers=1)), tmp_path / "bi.pt")
    result = subprocess.run([sys.executable, "-m", "asr", "export", str(tmp_path / "bi.pt"),
                             "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode != 0 and "unidirectional" in result.stderr


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
