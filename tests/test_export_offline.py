"""The offline (bidirectional) model as one ONNX file: contract, parity with PyTorch on padded
batches of real audio, and the int8 copy (really quantised, transcripts close to fp32's)."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from common import EXAMPLE

from asr.audio import load_audio
from asr.checkpoint import load_model
from asr.corpora import read_corpus
from asr.decode import greedy_decode
from asr.defaults import OFFLINE_MODEL, OFFLINE_MODEL_TYPE, SHARED_SPEECH
from asr.metrics import ErrorRates
from asr.model import CTCModel, ModelDims
from export.offline_graph import INPUT_NAMES, OUTPUT_NAMES
from export.onnx_export import export_offline_onnx
from export.parity import offline_max_abs_diff, run_offline, torch_batch_log_probs
from streaming.engine import onnx_session

# float32 rounding through 3 bidirectional layers, 3 phases: 2.4e-4 seen on the shipped model
FP32_TOLERANCE = 1e-3
INT8_MAX_CER = 0.1  # int8 greedy transcripts against fp32's
METADATA_KEYS = {"model_type", "version", "vocabulary", "blank_id", "sample_rate", "hop_samples",
                 "frame_seconds", "feature_config", "model_dims", "samples_per_frame",
                 "input_names", "output_names", "batch_padding", "max_segment_seconds"}
NATIVE_DEV = SHARED_SPEECH / "native_dev.jsonl"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[CTCModel, list[Path]]:
    """The bundled offline model and its fp32 and int8 ONNX exports."""
    if not OFFLINE_MODEL.is_file():
        pytest.skip(f"no bundled offline model at {OFFLINE_MODEL}")
    model = load_model(OFFLINE_MODEL)
    return model, export_offline_onnx(model, tmp_path_factory.mktemp("offline"))


def example_pieces() -> list[np.ndarray]:
    """The example and two shorter pieces of it, one shorter than a single output frame."""
    audio = load_audio(EXAMPLE)
    return [audio, audio[len(audio) // 3 :], audio[:100]]


def dev_recordings(count: int = 3) -> list[np.ndarray]:
    """The first `count` native dev utterances, of different lengths."""
    if not NATIVE_DEV.is_file():
        pytest.skip(f"native dev set not found at {NATIVE_DEV}")
    return [load_audio(u.audio) for u in read_corpus(NATIVE_DEV)[:count]]


def greedy_texts(model: CTCModel, log_probs: list[np.ndarray]) -> list[str]:
    return [greedy_decode(lp, model.vocab, model.ensemble_frame_seconds).text for lp in log_probs]


@pytest.mark.parametrize("bidirectional", [True, False])
def test_padded_batch_matches_torch(tmp_path, bidirectional):
    torch.manual_seed(0)
    model = CTCModel(ModelDims(hidden=32, layers=2, bidirectional=bidirectional))
    fp32, = export_offline_onnx(model, tmp_path, int8=False)
    session = onnx_session(fp32)
    pieces = example_pieces()
    assert offline_max_abs_diff(session, model, pieces) < FP32_TOLERANCE
    # each item of the batch is what it gives alone (the batch size is not baked in)
    batch = run_offline(session, pieces)
    for piece, log_probs in zip(pieces, batch, strict=True):
        alone, = run_offline(session, [piece])
        assert np.abs(alone - log_probs).max() < FP32_TOLERANCE
    # one frame per hop, over whole LSTM steps
    step, stack = model.features.hop_length * model.dims.stack, model.dims.stack
    assert [len(lp) for lp in batch] == [stack * -(-len(p) // step) for p in pieces]


def test_shipped_contract(shipped):
    model, paths = shipped
    for path in paths:
        proto = onnx.load(str(path))
        meta = {p.key: p.value for p in proto.metadata_props}
        assert set(meta) >= METADATA_KEYS
        assert meta["model_type"] == OFFLINE_MODEL_TYPE
        vocabulary = json.loads(meta["vocabulary"])
        assert vocabulary == list(model.vocab.tokens)
        assert vocabulary[int(meta["blank_id"])] == "<blank>"
        assert int(meta["sample_rate"]) == 16000 and int(meta["samples_per_frame"]) == 160
        assert json.loads(meta["model_dims"])["bidirectional"]
        assert [i.name for i in proto.graph.input] == json.loads(meta["input_names"])
        assert [o.name for o in proto.graph.output] == json.loads(meta["output_names"])
        assert tuple(json.loads(meta["input_names"])) == INPUT_NAMES
        assert tuple(json.loads(meta["output_names"])) == OUTPUT_NAMES


def test_shipped_fp32_matches_torch_on_real_audio(shipped):
    model, (fp32, _) = shipped
    session = onnx_session(fp32)
    assert offline_max_abs_diff(session, model, [load_audio(EXAMPLE)]) < FP32_TOLERANCE
    assert offline_max_abs_diff(session, model, example_pieces()) < FP32_TOLERANCE
    example = [load_audio(EXAMPLE)]
    assert (greedy_texts(model, run_offline(session, example))
            == greedy_texts(model, torch_batch_log_probs(model, example)))


def test_shipped_fp32_matches_torch_on_a_dev_batch(shipped):
    model, (fp32, _) = shipped
    recordings = dev_recordings()
    assert len({len(r) for r in recordings}) == len(recordings)
    assert offline_max_abs_diff(onnx_session(fp32), model, recordings) < FP32_TOLERANCE


def test_shipped_int8_is_quantised(shipped):
    model, (fp32, int8) = shipped
    ops = Counter(node.op_type for node in onnx.load(str(int8)).graph.node)
    lstm_nodes = model.dims.layers * 2  # one ONNX LSTM per layer and direction
    assert ops["DynamicQuantizeLSTM"] == lstm_nodes and ops["LSTM"] == 0
    assert ops["MatMulInteger"] == 2  # input and output projections; the frontend stays float
    float32_bytes = 4 * sum(p.numel() for p in model.parameters())  # fp32 stores exact halves
    assert int8.stat().st_size < float32_bytes / 3


def test_shipped_int8_transcripts_agree_with_fp32(shipped):
    model, (fp32, int8) = shipped
    recordings = [load_audio(EXAMPLE), *dev_recordings()]
    fp32_texts = greedy_texts(model, run_offline(onnx_session(fp32), recordings))
    int8_texts = greedy_texts(model, run_offline(onnx_session(int8), recordings))
    agreement = ErrorRates()
    for reference, hypothesis in zip(fp32_texts, int8_texts, strict=True):
        agreement.add(reference, hypothesis)
    assert agreement.cer < INT8_MAX_CER, (fp32_texts, int8_texts)
