"""`asr export`: a model as one self-contained ONNX file (raw 16 kHz audio in, CTC log-probs
out, the log-mel frontend and normalisation inside) plus an int8 copy, with everything an app
needs in the ONNX metadata.

- streaming (unidirectional): `export_onnx`, state as explicit inputs/outputs
  (`export.streaming_graph`);
- offline (bidirectional, or any): `export_offline_onnx`, a right-padded batch with lengths
  in, log-probs with lengths out (`export.offline_graph`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import Tensor, nn

from asr import __version__
from asr.defaults import OFFLINE_MODEL_TYPE
from asr.model import CTCModel
from asr.transcribe import MAX_SEGMENT_SECONDS
from export.offline_graph import INPUT_NAMES, OUTPUT_NAMES, OfflineGraph
from export.streaming_graph import STATE_NAMES, StreamingStep
from streaming.engine import MODEL_TYPE as STREAMING_MODEL_TYPE

FP32_NAME, INT8_NAME = "model.onnx", "model.int8.onnx"
OPSET = 17
LATENCY_MS = 160  # a streaming model's default algorithmic latency: its chunk and look-ahead


def common_metadata(model: CTCModel, model_type: str) -> dict[str, str]:
    """Metadata every exported model carries (ONNX metadata values are all strings)."""
    features = model.features
    return {
        "model_type": model_type,
        "version": __version__,
        "vocabulary": json.dumps(list(model.vocab.tokens)),
        "blank_id": str(model.vocab.blank_id),
        "sample_rate": str(features.sample_rate),
        "hop_samples": str(features.hop_length),
        "frame_seconds": str(model.ensemble_frame_seconds),
        "feature_config": json.dumps(features.to_dict()),
        "model_dims": json.dumps(model.dims.to_dict()),
    }


def streaming_metadata(model: CTCModel, chunk_ms: int | None = None) -> dict[str, str]:
    """The streaming model's contract: common metadata plus chunking and state names. The
    recommended chunk is `chunk_ms`, by default what `LATENCY_MS` leaves after the look-ahead
    (at least one hop)."""
    hop, rate = model.features.hop_length, model.features.sample_rate
    lookahead = model.dims.lookahead * hop
    if chunk_ms is None:
        chunk = max(1, round(LATENCY_MS * rate / 1000 / hop) - model.dims.lookahead) * hop
    else:
        chunk = max(1, round(chunk_ms * rate / 1000 / hop)) * hop
    return {**common_metadata(model, STREAMING_MODEL_TYPE),
            "recommended_chunk_samples": str(chunk),
            "lookahead_samples": str(lookahead),
            "state_names": json.dumps(list(STATE_NAMES))}


def offline_metadata(model: CTCModel) -> dict[str, str]:
    """The offline model's contract: common metadata plus how to batch and how long to go."""
    return {**common_metadata(model, OFFLINE_MODEL_TYPE),
            "samples_per_frame": str(model.features.hop_length),
            "input_names": json.dumps(list(INPUT_NAMES)),
            "output_names": json.dumps(list(OUTPUT_NAMES)),
            "batch_padding": "right-pad each item with zeros to the longest; audio_lengths "
                             "holds each item's sample count, log_prob_lengths its valid frames",
            "max_segment_seconds": str(MAX_SEGMENT_SECONDS)}


def export_onnx(model: CTCModel, out_dir: str | Path, chunk_ms: int | None = None,
                int8: bool = True) -> list[Path]:
    """Write the streaming `model.onnx` (and `model.int8.onnx`) into `out_dir`; returns the
    paths."""
    step = StreamingStep(model.cpu().eval())
    example = torch.zeros(1, model.features.hop_length * 10)
    state_inputs = [f"state_{name}" for name in STATE_NAMES]
    state_outputs = [f"next_state_{name}" for name in STATE_NAMES]
    return _export(step, (example, *step.initial_state()), out_dir,
                   streaming_metadata(model, chunk_ms), int8,
                   input_names=["audio", *state_inputs], output_names=["log_probs", *state_outputs],
                   dynamic_axes={"audio": {1: "samples"}, "log_probs": {1: "frames"}})


def export_offline_onnx(model: CTCModel, out_dir: str | Path, int8: bool = True) -> list[Path]:
    """Write the offline `model.onnx` (and `model.int8.onnx`) into `out_dir`: a right-padded
    audio batch `[B, N]` and its lengths `[B]` in, log-probs `[B, T, V]` and their lengths
    `[B]` out (see `export.offline_graph`); returns the paths."""
    graph = OfflineGraph(model.cpu().eval())
    step = graph.samples_per_step
    # a batch of 2 with unequal lengths, so that neither the batch size nor a length is traced
    # as a constant
    example = (torch.zeros(2, 4 * step), torch.tensor([4 * step, 2 * step + 1]))
    audio, lengths = INPUT_NAMES
    log_probs, log_prob_lengths = OUTPUT_NAMES
    return _export(graph, example, out_dir, offline_metadata(model), int8,
                   input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                   dynamic_axes={audio: {0: "batch", 1: "samples"}, lengths: {0: "batch"},
                                 log_probs: {0: "batch", 1: "frames"},
                                 log_prob_lengths: {0: "batch"}})


def _export(graph: nn.Module, example: tuple[Tensor, ...], out_dir: str | Path,
            meta: dict[str, str], int8: bool, input_names: list[str], output_names: list[str],
            dynamic_axes: dict[str, dict[int, str]]) -> list[Path]:
    """Trace `graph` to `out_dir/model.onnx` with `meta`, and its int8 copy if asked."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / FP32_NAME
    torch.onnx.export(graph, example, str(fp32), dynamo=False, opset_version=OPSET,
                      input_names=input_names, output_names=output_names,
                      dynamic_axes=dynamic_axes)
    _set_metadata(fp32, meta)
    paths = [fp32]
    if int8:
        paths.append(quantize(fp32, out_dir / INT8_NAME))
    store_exact_halves(fp32)
    return paths


def store_exact_halves(path: Path) -> None:
    """Store the float32 weights that float16 holds exactly (those of a model saved with
    float16 weights, as the bundled ones are) as float16, each cast back to float32 by the
    graph: about half the file, the same numbers (onnxruntime folds the casts at load)."""
    proto = onnx.load(str(path))
    casts = []
    for weight in proto.graph.initializer:
        values = numpy_helper.to_array(weight)
        half = values.astype(np.float16)
        if values.dtype != np.float32 or not np.array_equal(half.astype(np.float32), values):
            continue
        name = weight.name
        weight.CopyFrom(numpy_helper.from_array(half, f"{name}.float16"))
        casts.append(onnx.helper.make_node("Cast", [weight.name], [name],
                                           to=onnx.TensorProto.FLOAT))
    nodes = [*casts, *proto.graph.node]
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


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
