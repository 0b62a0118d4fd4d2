"""Checks that an exported (streaming or offline) model computes what the PyTorch model computes."""

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
    them, then the model's look-ahead of zeros, as a finished stream does; returns the
    concatenated `[T, V]` log-probabilities, a frame for each hop of `audio`."""
    lookahead = int(session.get_modelmeta().custom_metadata_map.get("lookahead_samples", 0))
    audio = np.pad(audio, (0, lookahead))
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


def pad_batch(recordings: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Recordings right-padded with zeros into `[B, N]` float32, and their lengths (int64):
    the offline model's inputs."""
    longest = max(len(audio) for audio in recordings)
    audio = np.stack([np.pad(a, (0, longest - len(a))) for a in recordings]).astype(np.float32)
    return audio, np.array([len(a) for a in recordings], dtype=np.int64)


def run_offline(session: ort.InferenceSession,
                recordings: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each recording's valid `[T, V]` log-probabilities from one padded-batch run of an
    offline model."""
    audio, lengths = pad_batch(recordings)
    log_probs, frames = session.run(None, {"audio": audio, "audio_lengths": lengths})
    return [item[:n] for item, n in zip(log_probs, frames, strict=True)]


@torch.no_grad()
def torch_batch_log_probs(model: CTCModel, recordings: Sequence[np.ndarray]) -> list[np.ndarray]:
    """What `run_offline` gives, computed by the PyTorch model on the same padded batch."""
    audio, lengths = pad_batch(recordings)
    log_probs, frames = model.eval().recognize_audio(torch.from_numpy(audio),
                                                     torch.from_numpy(lengths))
    return [item[:n].numpy() for item, n in zip(log_probs, frames, strict=True)]


def torch_log_probs(model: CTCModel, audio: np.ndarray) -> np.ndarray:
    """The PyTorch model's `[T, V]` log-probabilities of one recording."""
    return torch_batch_log_probs(model, [audio])[0]


def offline_max_abs_diff(session: ort.InferenceSession, model: CTCModel,
                         recordings: Sequence[np.ndarray]) -> float:
    """Largest |ONNX - PyTorch| over every item's valid frames of one padded batch."""
    pairs = zip(run_offline(session, recordings), torch_batch_log_probs(model, recordings),
                strict=True)
    return max(max_abs_diff(a, b) for a, b in pairs)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.abs(a - b).max()) if a.size else 0.0
