"""`asr export`: the streaming model as `model.onnx` (raw audio in, CTC log-probs out) and an
int8 copy `model.int8.onnx`, with everything an app needs in the ONNX metadata."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from asr import __version__
from asr.model import CTCModel
from export.streaming_graph import STATE_NAMES, StreamingStep

FP32_NAME, INT8_NAME = "model.onnx", "model.int8.onnx"
OPSET = 17
DEFAULT_CHUNK_MS = 160


def metadata(model: CTCModel, chunk_ms: int) -> dict[str, str]:
    """The app-facing contract, stored as ONNX metadata (all values are strings)."""
    features = model.features
    hop = features.hop_length
    chunk = max(1, round(chunk_ms * features.sample_rate / 1000 / hop)) * hop
    return {
        "model_type": "lstm-ctc-streaming",
        "version": __version__,
        "vocabulary": json.dumps(list(model.vocab.tokens)),
        "blank_id": str(model.vocab.blank_id),
        "sample_rate": str(features.sample_rate),
        "hop_samples": str(hop),
        "frame_seconds": str(model.frame_seconds),
        "recommended_chunk_samples": str(chunk),
        "lookahead_samples": "0",
        "state_names": json.dumps(list(STATE_NAMES)),
        "feature_config": json.dumps(features.to_dict()),
        "model_dims": json.dumps(model.dims.to_dict()),
    }


def export_onnx(model: CTCModel, out_dir: str | Path, chunk_ms: int = DEFAULT_CHUNK_MS,
                int8: bool = True) -> list[Path]:
    """Write `model.onnx` (and `model.int8.onnx`) into `out_dir`; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    step = StreamingStep(model.cpu().eval())
    state = step.initial_state()
    example = torch.zeros(1, model.features.hop_length * 10)
    state_inputs = [f"state_{name}" for name in STATE_NAMES]
    state_outputs = [f"next_state_{name}" for name in STATE_NAMES]
    fp32 = out_dir / FP32_NAME
    torch.onnx.export(
        step, (example, *state), str(fp32), dynamo=False, opset_version=OPSET,
        input_names=["audio", *state_inputs], output_names=["log_probs", *state_outputs],
        dynamic_axes={"audio": {1: "samples"}, "log_probs": {1: "frames"}})
    _set_metadata(fp32, metadata(model, chunk_ms))
    paths = [fp32]
    if int8:
        paths.append(quantize(fp32, out_dir / INT8_NAME))
    return paths


def _set_metadata(path: Path, values: dict[str, str]) -> None:
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in values.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def quantize(fp32: Path, int8: Path) -> Path:
    """Dynamic int8 quantisation of the LSTM and linear layers; the frontend stays float."""
    proto = onnx.load(str(fp32))
    frontend = [n.name for n in proto.graph.node if "frontend" in n.name]
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["LSTM", "MatMul", "Gemm"], nodes_to_exclude=frontend)
    _set_metadata(int8, {p.key: p.value for p in proto.metadata_props})
    return int8
