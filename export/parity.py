"""Checks that an exported streaming model computes what the PyTorch model computes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
import torch

from asr.model import CTCModel
from streaming.engine import zero_state


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
