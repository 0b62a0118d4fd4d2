"""LSTM-CTC acoustic model over characters, bidirectional (offline) or unidirectional (streaming).

audio -> log-mel (10 ms) -> global mean/variance normalisation -> stack `stack` frames
(30 ms a step), and the `lookahead` frames after them -> linear -> LSTM layers -> linear ->
log-softmax over the vocabulary.

Training sees one stacking phase (steps start at frame 0). Recognition (`recognize_audio`, and
the exported graphs) runs all `stack` phases, one LSTM sequence each, and interleaves them into
one output every 10 ms, each the mean of the last `stack` outputs' probabilities: a phase
ensemble. A model alone learns where its 30 ms steps fall, so that delaying the audio by 10 ms
changed a third of its characters; the ensemble's output moves with the audio instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr.features import FeatureConfig, LogMel, num_frames, pad_for_frames
from asr.text import Vocabulary

LSTMState = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class ModelDims:
    """Sizes of the acoustic model."""

    n_mels: int = 80
    stack: int = 3  # log-mel frames per LSTM step: 3 x 10 ms = 30 ms
    lookahead: int = 0  # later log-mel frames each step also reads (its algorithmic delay)
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


def stack_frames(frames: Tensor, stack: int, lookahead: int = 0) -> Tensor:
    """`[B, T, F]` -> `[B, S, (stack + lookahead) * F]`, S = (T - lookahead) // stack: step s
    reads frames `stack * s` to `stack * (s + 1) + lookahead - 1`, in time order."""
    batch, time, dim = frames.shape
    steps = (time - lookahead) // stack
    own = frames[:, : steps * stack].reshape(batch, steps, stack * dim)
    later = [frames[:, stack + j : stack + j + steps * stack : stack] for j in range(lookahead)]
    return torch.cat([own, *later], dim=-1)


def phase_windows(frames: Tensor, stack: int, lookahead: int = 0) -> Tensor:
    """`[B, stack * G + stack - 1 + lookahead, F]` -> `[stack * B, G, (stack + lookahead) * F]`:
    the window of `stack` frames ending at each of the `stack * G` frames before the last
    `lookahead`, with the `lookahead` frames after it; window `stack * t + q` is step t of
    phase q (rows `q * B` to `q * B + B - 1`)."""
    groups = (frames.shape[1] - stack + 1 - lookahead) // stack
    return torch.cat([stack_frames(frames[:, q : q + stack * groups + lookahead], stack,
                                   lookahead) for q in range(stack)])


def interleave_phases(log_probs: Tensor, stack: int) -> Tensor:
    """`[stack * B, G, V]` per phase (as `phase_windows`) -> `[B, stack * G, V]` in time order."""
    phases, steps, vocab = log_probs.shape
    batch = phases // stack
    return log_probs.reshape(stack, batch, steps, vocab).permute(1, 2, 0, 3).reshape(
        batch, steps * stack, vocab)


def smooth_phases(log_probs: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
    """The normalised mean of the probabilities of each frame of `[B, T, V]` and of the `S`
    frames before it, as log-probs, and the last `S` frames' probabilities. `previous`
    `[B, S, V]` holds the probabilities of the frames before the first (zeros at the start)."""
    probs = torch.cat([previous, log_probs.exp()], dim=1)
    span, time = previous.shape[1], log_probs.shape[1]
    total = probs[:, span:]
    for back in range(1, span + 1):
        total = total + probs[:, span - back : span - back + time]
    return torch.log_softmax(torch.log(total), dim=-1), probs[:, probs.shape[1] - span:]


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
        self.input = nn.Linear((dims.stack + dims.lookahead) * dims.n_mels, dims.hidden)
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
        """Log-mel frames of a right-padded batch `[B, N]` and each item's frame count. The
        frames run `lookahead` past the last whole step, over zeros, as a finished stream's do."""
        samples = pad_for_frames(audio, self.features, self.dims.stack)
        tail = self.dims.lookahead * self.features.hop_length
        frames = self.frontend(F.pad(samples, (0, tail)))
        counts = [num_frames(int(n), self.features, self.dims.stack) for n in lengths]
        return frames, torch.tensor(counts, dtype=torch.long)

    def normalize(self, frames: Tensor) -> Tensor:
        return (frames - self.feature_mean) / self.feature_std

    def project(self, stacked: Tensor) -> Tensor:
        """LSTM input of normalised, stacked log-mel frames `[B, T, (stack + lookahead) *
        n_mels]`."""
        return self.dropout(torch.relu(self.input(stacked)))

    def classify(self, hidden: Tensor) -> Tensor:
        return torch.log_softmax(self.output(self.dropout(hidden)), dim=-1)

    def forward(self, frames: Tensor, frame_lengths: Tensor,
                intermediate: int = 0) -> tuple[Tensor, Tensor]:
        """CTC log-probabilities `[B, T', V]` of log-mel frames `[B, T, n_mels]`, and T' lengths.
        Steps that look ahead past the last frame see digital silence there.

        With `intermediate` k (1 <= k < layers), the output layer also reads LSTM layer k, and
        the log-probabilities are `[2, B, T', V]`: the last layer's, then layer k's (for an
        intermediate CTC loss in training)."""
        lookahead = self.dims.lookahead
        frames = F.pad(frames, (0, 0, 0, lookahead), value=self.silence_frame)
        x = self.project(stack_frames(self.normalize(frames), self.dims.stack, lookahead))
        lengths = (frame_lengths // self.dims.stack).clamp(min=1, max=x.shape[1])
        if not intermediate:
            return self.classify(self.encode(x, lengths)), lengths
        if not 1 <= intermediate < self.dims.layers:
            raise ValueError(f"intermediate layer {intermediate} is not one of 1 to "
                             f"{self.dims.layers - 1}")
        layers = self.layer_outputs(x, lengths)
        return torch.stack([self.classify(layers[-1]), self.classify(layers[intermediate - 1])]), \
            lengths

    @property
    def silence_frame(self) -> float:
        """The log-mel value of digital silence (the frontend's floor)."""
        return math.log(self.features.log_floor)

    @property
    def ensemble_frame_seconds(self) -> float:
        """Duration of one output frame of the phase ensemble (`recognize`)."""
        return self.features.hop_length / self.features.sample_rate

    def recognize(self, frames: Tensor, frame_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The phase ensemble's log-probabilities `[B, T, V]`, one frame per log-mel frame, of
        log-mel frames `[B, T, n_mels]` (an incomplete last step is dropped), and each item's
        valid frames.

        Frame k is the smoothed output of the window of `stack` frames ending at frame k (and
        the `lookahead` frames after it); the frames before the first and after the last are
        digital silence. Frames past each item's valid ones are to be dropped."""
        stack, lookahead = self.dims.stack, self.dims.lookahead
        frames = F.pad(frames, (0, 0, stack - 1, lookahead), value=self.silence_frame)
        windows = phase_windows(self.normalize(frames), stack, lookahead)
        steps = (frame_lengths // stack).clamp(min=1, max=windows.shape[1])
        log_probs = self.classify(self.encode(self.project(windows), steps.repeat(stack)))
        merged = interleave_phases(log_probs, stack)
        previous = merged.new_zeros(merged.shape[0], stack - 1, merged.shape[2])
        return smooth_phases(merged, previous)[0], steps * stack

    def encode(self, x: Tensor, lengths: Tensor) -> Tensor:
        """The last LSTM layer's outputs of a right-padded batch (`layer_outputs`)."""
        if not self.dims.bidirectional:
            return self.lstm(x)[0]
        return self.layer_outputs(x, lengths)[-1]

    def layer_outputs(self, x: Tensor, lengths: Tensor) -> list[Tensor]:
        """Each LSTM layer's outputs of a right-padded batch; exact at each item's valid steps.

        The padded batch runs as dense LSTM calls (the fast oneDNN/cuDNN path; packed
        sequences are several times slower on CPU). Padding at the end never reaches a valid
        step of a forward direction; a backward direction reads each sequence reversed within
        its own length, so it too starts at the item's true end.
        """
        directions = 2 if self.dims.bidirectional else 1
        zeros = x.new_zeros(1, x.shape[0], self.dims.hidden)
        layers = []
        for layer in range(self.dims.layers):
            if layer:
                x = nn.functional.dropout(x, self.lstm.dropout, self.training)
            outputs = []
            for direction in range(directions):
                # w_ih, w_hh, b_ih, b_hh
                weights = self.lstm.all_weights[directions * layer + direction]
                inputs = reverse_within(x, lengths) if direction else x
                out = torch.lstm(inputs, (zeros, zeros), weights, self.lstm.bias, 1, 0.0,
                                 self.training, False, True)[0]
                outputs.append(reverse_within(out, lengths) if direction else out)
            x = torch.cat(outputs, dim=-1)
            layers.append(x)
        return layers

    def transcribe_audio(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """CTC log-probabilities of a right-padded audio batch `[B, N]` (16 kHz, mono), as
        trained (one phase, `frame_seconds` a frame)."""
        frames, frame_lengths = self.log_mel(audio, lengths)
        return self(frames.to(audio.device), frame_lengths.to(audio.device))

    def recognize_audio(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """`recognize` of a right-padded audio batch `[B, N]`: what the exported graphs give."""
        frames, frame_lengths = self.log_mel(audio, lengths)
        return self.recognize(frames.to(audio.device), frame_lengths.to(audio.device))

    def initial_state(self, batch: int = 1) -> LSTMState:
        """Zero (h, c) for `step`."""
        shape = (self.dims.layers, batch, self.dims.hidden)
        return torch.zeros(shape), torch.zeros(shape)

    def step(self, windows: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        """Unidirectional streaming step over normalised, stacked frames `[B, k, (stack +
        lookahead) * F]`."""
        if self.dims.bidirectional:
            raise RuntimeError("a bidirectional model cannot stream; train with --unidirectional")
        hidden, state = self.lstm(self.project(windows), state)
        return self.classify(hidden), state


def widen(model: CTCModel, hidden: int, seed: int = 0) -> CTCModel:
    """The same recogniser with `hidden` LSTM units per direction (Net2Net widening).

    Each new unit copies a randomly drawn existing unit: its rows of the input projection and
    of all four gates of every LSTM layer and direction.  The columns that read a copied unit
    (recurrent weights, the next layer's input weights, the output layer) are split evenly
    between it and its copies, so the wider model computes exactly the same output.  Dropout
    gives the copies different gradients, so in training they drift apart.
    """
    old = model.dims.hidden
    if hidden <= old:
        raise ValueError(f"widening needs more than the model's {old} units, not {hidden}")
    generator = torch.Generator().manual_seed(seed)
    source = torch.cat([torch.arange(old), torch.randint(old, (hidden - old,),
                                                          generator=generator)])
    share = 1.0 / torch.bincount(source, minlength=old)[source].float()
    gates = torch.cat([k * old + source for k in range(4)])

    def units_in(weight: Tensor, blocks: int) -> Tensor:
        """Columns of `weight` that read `blocks` concatenated layers of units, split."""
        return torch.cat([weight[:, b * old + source] * share for b in range(blocks)], dim=1)

    directions = 2 if model.dims.bidirectional else 1
    wide = CTCModel(replace(model.dims, hidden=hidden), model.features, model.vocab)
    state = model.state_dict()
    for name in ("input.weight", "input.bias"):
        state[name] = state[name][source]
    for name in [n for n in state if n.startswith("lstm.")]:
        state[name] = state[name][gates]
        if name.startswith("lstm.weight_"):  # reads the layer below (or the input), or itself
            below = name.startswith("lstm.weight_ih") and not name.startswith("lstm.weight_ih_l0")
            state[name] = units_in(state[name], directions if below else 1)
    state["output.weight"] = units_in(state["output.weight"], directions)
    wide.load_state_dict(state)
    return wide


def extend_lookahead(model: CTCModel, lookahead: int) -> CTCModel:
    """The same recogniser with each step also reading the `lookahead` log-mel frames after it.
    Their input weights start at zero, so it starts as the same function; training teaches it
    to use them."""
    old = model.dims.lookahead
    if lookahead <= old:
        raise ValueError(f"the model already looks {old} frames ahead; {lookahead} is no further")
    longer = CTCModel(replace(model.dims, lookahead=lookahead), model.features, model.vocab)
    state = model.state_dict()
    weight = state["input.weight"]
    state["input.weight"] = torch.cat(
        [weight, weight.new_zeros(weight.shape[0], (lookahead - old) * model.dims.n_mels)], dim=1)
    longer.load_state_dict(state)
    return longer


def grow(model: CTCModel, dims: ModelDims, seed: int = 0) -> CTCModel:
    """`model` with `dims`: widened (`widen`) and reading further ahead (`extend_lookahead`) as
    far as they ask, with `dims.dropout`, at first the same function in evaluation. Any other
    difference is a `ValueError`."""
    if model.dims.hidden < dims.hidden:
        model = widen(model, dims.hidden, seed)
    if model.dims.lookahead < dims.lookahead:
        model = extend_lookahead(model, dims.lookahead)
    if model.dims != replace(dims, dropout=model.dims.dropout):
        raise ValueError(f"a model with dimensions {model.dims} cannot grow into {dims}: only "
                         "hidden and lookahead may grow (and dropout change)")
    if model.dims.dropout != dims.dropout:
        regularised = CTCModel(dims, model.features, model.vocab)
        regularised.load_state_dict(model.state_dict())
        model = regularised
    return model


def average(models: Sequence[CTCModel]) -> CTCModel:
    """The mean of the weights of models trained from one another (say a model and its
    fine-tune), in any order: a shorter look-ahead is extended to the longest first. Of one
    model, a copy."""
    lookahead = max(m.dims.lookahead for m in models)
    grown = [extend_lookahead(m, lookahead) if m.dims.lookahead < lookahead else m
             for m in models]
    first = grown[0]
    if any(m.dims != first.dims for m in grown):
        raise ValueError("only models of the same dimensions, but for a shorter look-ahead, can "
                         "be averaged")
    mean = CTCModel(first.dims, first.features, first.vocab)
    states = [m.state_dict() for m in grown]
    mean.load_state_dict({name: sum(s[name] for s in states) / len(states)
                          if value.is_floating_point() else value
                          for name, value in states[0].items()})
    return mean.eval()
