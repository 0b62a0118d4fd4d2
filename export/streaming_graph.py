"""The unidirectional model as one streaming step over raw audio, with all state explicit: the
phase ensemble of `CTCModel.recognize`, one output frame per 10 ms log-mel frame.

Carried values (zeros to start):
  audio  `[1, n_fft - hop]`             the samples the next STFT window still covers
  frames `[1, 2 * (stack - 1) + lookahead, n_mels]`
                                        the last log-mel frames, less the silence floor (so
                                        that zeros are silence), right-aligned: the `stack - 1`
                                        before the first pending frame, then those
  count  `[1]` int64                    how many frames are pending, not yet the end of a
                                        window (< stack + lookahead: a window also waits for
                                        the `lookahead` frames after it)
  h, c   `[layers, stack, hidden]`      LSTM state, one per phase
  probs  `[1, stack - 1, vocab]`        the last output frames' probabilities, for smoothing
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asr.model import CTCModel, interleave_phases, phase_windows, smooth_phases

STATE_NAMES = ("audio", "frames", "count", "h", "c", "probs")


class StreamingStep(nn.Module):
    """`(audio chunk, *state) -> (log_probs of the frames completed, *next_state)`."""

    def __init__(self, model: CTCModel) -> None:
        super().__init__()
        if model.dims.bidirectional:
            raise ValueError("only a unidirectional model streams; train with --unidirectional")
        self.model = model
        self.eval()

    def initial_state(self) -> tuple[Tensor, ...]:
        dims, features = self.model.dims, self.model.features
        h, c = self.model.initial_state(dims.stack)
        return (torch.zeros(1, features.context_samples),
                torch.zeros(1, 2 * (dims.stack - 1) + dims.lookahead, dims.n_mels),
                torch.zeros(1, dtype=torch.int64), h, c,
                torch.zeros(1, dims.stack - 1, dims.vocab_size))

    def forward(self, audio: Tensor, state_audio: Tensor, state_frames: Tensor,
                state_count: Tensor, state_h: Tensor, state_c: Tensor,
                state_probs: Tensor) -> tuple[Tensor, ...]:
        model, stack, lookahead = self.model, self.model.dims.stack, self.model.dims.lookahead
        signal = torch.cat([state_audio, audio], dim=1)
        next_audio = signal[:, signal.shape[1] - state_audio.shape[1]:]
        floor = model.silence_frame
        frames = torch.cat([state_frames + floor, model.frontend(signal)], dim=1)
        pending = state_count + (frames.shape[1] - state_frames.shape[1])
        steps = torch.div(torch.clamp(pending - lookahead, min=0), stack, rounding_mode="floor")
        # Always run at least one LSTM step (a zero-length LSTM is not valid ONNX); when no
        # step is complete its outputs are dropped below and the old state kept.
        run = torch.clamp(steps, min=1)
        first = frames.shape[1] - pending - (stack - 1)  # the window of the first pending frame
        span = run[0] * stack + stack - 1 + lookahead
        index = (first + torch.arange(span)).clamp(max=frames.shape[1] - 1)
        windows = phase_windows(model.normalize(frames.index_select(1, index)), stack, lookahead)
        log_probs, (h, c) = model.step(windows, (state_h, state_c))
        smoothed, probs = smooth_phases(interleave_phases(log_probs, stack), state_probs)
        complete = steps > 0
        done = steps[0] * stack
        return (smoothed[:, :done], next_audio,
                frames[:, frames.shape[1] - state_frames.shape[1]:] - floor,
                pending - done, torch.where(complete, h, state_h),
                torch.where(complete, c, state_c), torch.where(complete, probs, state_probs))
