"""Checks that an exported streaming model computes what the PyTorch model computes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from asr.model import CTCModel


def onnx_session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def zero_state(session: ort.InferenceSession) -> dict[str, np.ndarray]:
    """The initial (all-zero) state inputs of a streaming session."""
    dtypes = {"tensor(int64)": np.int64, "tensor(float)": np.float32}
    return {i.name: np.zeros(i.shape, dtype=dtypes[i.type])
            for i in session.get_inputs() if i.name.startswith("state_")}


def run_chunks(session: ort.InferenceSession, audio: np.ndarray,
               chunk_sizes: Sequence[int]) -> np.ndarray:
    """Feed `audio` (a multiple of the hop long) in chunks of the given sizes, cycling through
    them; returns the concatenated `[T, V]` log-probabilities."""
    state = zero_state(session)
    outputs, position, i = [], 0, 0
    while position < len(audio):
        size = chunk_sizes[i % len(chunk_sizes)]
        chunk = audio[position : position + size][None].astype(np.float32)
        log_probs, *next_state = session.run(None, {"audio": chunk, **state})
        state = dict(zip(state, next_state, strict=True))
        outputs.append(log_probs[0])
        position, i = position + size, i + 1
    return np.concatenate(outputs)


def pad_to_steps(audio: np.ndarray, model: CTCModel) -> np.ndarray:
    """Zero-pad audio to whole LSTM steps, as the offline path and a finished stream do."""
    step = model.features.hop_length * model.dims.stack
    return np.pad(audio, (0, (-len(audio)) % step)).astype(np.float32)


@torch.no_grad()
def torch_log_probs(model: CTCModel, audio: np.ndarray) -> np.ndarray:
    samples = torch.from_numpy(audio)[None]
    log_probs, _ = model.eval().transcribe_audio(samples, torch.tensor([len(audio)]))
    return log_probs[0].numpy()


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.abs(a - b).max()) if a.size else 0.0
