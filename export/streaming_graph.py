"""The unidirectional model as one streaming step over raw audio, with all state explicit.

Carried values (zeros to start):
  audio  `[1, n_fft - hop]`        the samples the next STFT window still covers
  frames `[1, stack - 1, n_mels]`  log-mel frames not yet grouped into an LSTM step
  count  `[1]` int64               how many of `frames` are real (right-aligned)
  h, c   `[layers, 1, hidden]`     LSTM state
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asr.model import CTCModel

STATE_NAMES = ("audio", "frames", "count", "h", "c")


class StreamingStep(nn.Module):
    """`(audio chunk, *state) -> (log_probs of the steps completed, *next_state)`."""

    def __init__(self, model: CTCModel) -> None:
        super().__init__()
        if model.dims.bidirectional:
            raise ValueError("only a unidirectional model streams; train with --unidirectional")
        self.model = model
        self.eval()

    def initial_state(self) -> tuple[Tensor, ...]:
        dims, features = self.model.dims, self.model.features
        h, c = self.model.initial_state()
        return (torch.zeros(1, features.context_samples),
                torch.zeros(1, dims.stack - 1, dims.n_mels),
                torch.zeros(1, dtype=torch.int64), h, c)

    def forward(self, audio: Tensor, state_audio: Tensor, state_frames: Tensor,
                state_count: Tensor, state_h: Tensor, state_c: Tensor) -> tuple[Tensor, ...]:
        stack = self.model.dims.stack
        signal = torch.cat([state_audio, audio], dim=1)
        next_audio = signal[:, signal.shape[1] - state_audio.shape[1]:]
        frames = torch.cat([state_frames, self.model.frontend(signal)], dim=1)
        available = state_count + frames.shape[1] - (stack - 1)  # real frames, right-aligned
        steps = torch.div(available, stack, rounding_mode="floor")
        # Always run at least one LSTM step (a zero-length LSTM is not valid ONNX); when no
        # group is complete its outputs are dropped below and the old state kept.
        run = torch.clamp(steps, min=1)
        first = frames.shape[1] - available
        index = (first + torch.arange(run[0] * stack)).clamp(max=frames.shape[1] - 1)
        log_probs, (h, c) = self.model.step(frames.index_select(1, index), (state_h, state_c))
        complete = steps > 0
        return (log_probs[:, : steps[0]], next_audio, frames[:, frames.shape[1] - (stack - 1):],
                available - steps * stack, torch.where(complete, h, state_h),
                torch.where(complete, c, state_c))
