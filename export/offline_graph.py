"""The (bidirectional) model over a right-padded batch of raw audio, as one exportable graph.

Inputs:  audio `[B, N]` float32 16 kHz mono in [-1, 1], right-padded with zeros;
         audio_lengths `[B]` int64, each item's real sample count.
Outputs: log_probs `[B, T, V]` CTC log-probabilities of the phase ensemble, one frame per
         10 ms hop, T = stack * ceil(N / samples_per_step);
         log_prob_lengths `[B]` int64, each item's valid frames
         (stack * ceil(length / samples_per_step)).

Item b's first `log_prob_lengths[b]` frames equal what `CTCModel.recognize_audio` gives for it
alone: the audio is zero-padded to whole LSTM steps inside the graph, and the backward LSTM
direction reads each item reversed within its own length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr.model import CTCModel

INPUT_NAMES = ("audio", "audio_lengths")
OUTPUT_NAMES = ("log_probs", "log_prob_lengths")


class OfflineGraph(nn.Module):
    """`(audio, audio_lengths) -> (log_probs, log_prob_lengths)` of a whole padded batch."""

    def __init__(self, model: CTCModel) -> None:
        super().__init__()
        self.model = model
        self.eval()

    @property
    def samples_per_step(self) -> int:
        """Audio samples per LSTM step (`stack` output frames)."""
        return self.model.features.hop_length * self.model.dims.stack

    def forward(self, audio: Tensor, audio_lengths: Tensor) -> tuple[Tensor, Tensor]:
        model, step = self.model, self.samples_per_step
        # A fixed tail of `step - 1` zeros instead of padding to the next whole step: the
        # frames beyond it form an incomplete step, which `recognize` drops, so the steps are
        # exactly those of `pad_for_frames` (and the padding stays a constant in ONNX).
        frames = model.frontend(F.pad(audio, (model.features.context_samples, step - 1)))
        steps = torch.div(audio_lengths + (step - 1), step, rounding_mode="floor")
        return model.recognize(frames, steps * model.dims.stack)
