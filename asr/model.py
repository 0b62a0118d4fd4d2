"""LSTM-CTC acoustic model over characters, bidirectional (offline) or unidirectional (streaming).

audio -> log-mel (10 ms) -> global mean/variance normalisation -> stack `stack` frames
(30 ms a step) -> linear -> LSTM layers -> linear -> log-softmax over the vocabulary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from asr.features import FeatureConfig, LogMel, num_frames, pad_for_frames
from asr.text import Vocabulary

LSTMState = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class ModelDims:
    """Sizes of the acoustic model."""

    n_mels: int = 80
    stack: int = 3  # log-mel frames per LSTM step: 3 x 10 ms = 30 ms
    hidden: int = 256  # LSTM units per direction
    layers: int = 3
    bidirectional: bool = True
    vocab_size: int = len(Vocabulary())
    dropout: float = 0.1

    @property
    def output_size(self) -> int:
        return self.hidden * (2 if self.bidirectional else 1)

    def to_dict(self) -> dict:
        return asdict(self)


def reverse_within(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse the first `lengths[b]` steps of each sequence in `[B, T, D]`; padding stays put."""
    steps = torch.arange(x.shape[1], device=x.device)
    limit = lengths.to(x.device)[:, None]
    index = torch.where(steps < limit, limit - 1 - steps, steps)
    return x.gather(1, index[:, :, None].expand_as(x))


def stack_frames(frames: Tensor, stack: int) -> Tensor:
    """`[B, T, F]` -> `[B, T // stack, stack * F]`, dropping an incomplete last group."""
    batch, time, dim = frames.shape
    steps = time // stack
    return frames[:, : steps * stack].reshape(batch, steps, stack * dim)


class CTCModel(nn.Module):
    """The acoustic model, its frontend and normalisation statistics: one complete recogniser."""

    def __init__(self, dims: ModelDims, features: FeatureConfig | None = None,
                 vocab: Vocabulary | None = None) -> None:
        super().__init__()
        self.dims = dims
        self.features = features or FeatureConfig(n_mels=dims.n_mels)
        self.vocab = vocab or Vocabulary()
        if len(self.vocab) != dims.vocab_size or self.features.n_mels != dims.n_mels:
            raise ValueError("model dimensions disagree with the vocabulary or feature settings")
        self.frontend = LogMel(self.features)
        self.register_buffer("feature_mean", torch.zeros(dims.n_mels))
        self.register_buffer("feature_std", torch.ones(dims.n_mels))
        self.input = nn.Linear(dims.stack * dims.n_mels, dims.hidden)
        self.dropout = nn.Dropout(dims.dropout)
        self.lstm = nn.LSTM(dims.hidden, dims.hidden, dims.layers, batch_first=True,
                            bidirectional=dims.bidirectional,
                            dropout=dims.dropout if dims.layers > 1 else 0.0)
        self.output = nn.Linear(dims.output_size, dims.vocab_size)
        for name, bias in self.lstm.named_parameters():
            if name.startswith("bias_ih"):  # forget gate (2nd quarter) open at the start
                nn.init.constant_(bias[dims.hidden : 2 * dims.hidden], 1.0)

    @property
    def frame_seconds(self) -> float:
        """Duration of one output frame."""
        return self.dims.stack * self.features.hop_length / self.features.sample_rate

    def log_mel(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Log-mel frames of a right-padded batch `[B, N]` and each item's frame count."""
        frames = self.frontend(pad_for_frames(audio, self.features, self.dims.stack))
        counts = [num_frames(int(n), self.features, self.dims.stack) for n in lengths]
        return frames, torch.tensor(counts, dtype=torch.long)

    def normalize(self, frames: Tensor) -> Tensor:
        return (frames - self.feature_mean) / self.feature_std

    def project(self, frames: Tensor) -> Tensor:
        """Normalised, stacked and projected LSTM input of raw log-mel frames."""
        stacked = stack_frames(self.normalize(frames), self.dims.stack)
        return self.dropout(torch.relu(self.input(stacked)))

    def classify(self, hidden: Tensor) -> Tensor:
        return torch.log_softmax(self.output(self.dropout(hidden)), dim=-1)

    def forward(self, frames: Tensor, frame_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """CTC log-probabilities `[B, T', V]` of log-mel frames `[B, T, n_mels]`, and T' lengths."""
        x = self.project(frames)
        lengths = (frame_lengths // self.dims.stack).clamp(min=1, max=x.shape[1])
        return self.classify(self.encode(x, lengths)), lengths

    def encode(self, x: Tensor, lengths: Tensor) -> Tensor:
        """LSTM outputs of a right-padded batch; exact at each item's valid steps.

        The padded batch runs as one dense LSTM call (the fast oneDNN/cuDNN path; packed
        sequences are several times slower on CPU). Padding at the end never reaches a valid
        step of a forward direction; a backward direction reads each sequence reversed within
        its own length, so it too starts at the item's true end.
        """
        if not self.dims.bidirectional:
            return self.lstm(x)[0]
        zeros = x.new_zeros(1, x.shape[0], self.dims.hidden)
        for layer in range(self.dims.layers):
            if layer:
                x = nn.functional.dropout(x, self.lstm.dropout, self.training)
            outputs = []
            for direction in range(2):
                weights = self.lstm.all_weights[2 * layer + direction]  # w_ih, w_hh, b_ih, b_hh
                inputs = reverse_within(x, lengths) if direction else x
                out = torch.lstm(inputs, (zeros, zeros), weights, self.lstm.bias, 1, 0.0,
                                 self.training, False, True)[0]
                outputs.append(reverse_within(out, lengths) if direction else out)
            x = torch.cat(outputs, dim=-1)
        return x

    def transcribe_audio(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """CTC log-probabilities of a right-padded audio batch `[B, N]` (16 kHz, mono)."""
        frames, frame_lengths = self.log_mel(audio, lengths)
        return self(frames.to(audio.device), frame_lengths.to(audio.device))

    def initial_state(self, batch: int = 1) -> LSTMState:
        """Zero (h, c) for `step`."""
        shape = (self.dims.layers, batch, self.dims.hidden)
        return torch.zeros(shape), torch.zeros(shape)

    def step(self, frames: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        """Unidirectional streaming step over whole groups of log-mel frames `[B, k*stack, F]`."""
        if self.dims.bidirectional:
            raise RuntimeError("a bidirectional model cannot stream; train with --unidirectional")
        hidden, state = self.lstm(self.project(frames), state)
        return self.classify(hidden), state
