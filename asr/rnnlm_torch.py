"""The word LSTM LM (`asr.rnnlm`) in torch, for training, and its export to the `.npz` file
that `asr.rnnlm.RNNLM` scores with."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asr.rnnlm import LMDims


class WordLSTM(nn.Module):
    """The LM in torch: adaptive input, one LSTM layer, adaptive softmax, tied tables."""

    def __init__(self, dims: LMDims) -> None:
        super().__init__()
        self.dims = dims
        self.tables = nn.ParameterList(
            nn.Parameter(torch.randn(end - start, dims.cluster_dim(i)) * 0.05)
            for i, (start, end) in enumerate(dims.bounds))
        self.in_proj = nn.ModuleList(nn.Linear(dims.cluster_dim(i), dims.embed, bias=False)
                                     for i in range(1, len(dims.bounds)))
        self.lstm = nn.LSTM(dims.embed, dims.hidden, batch_first=True)
        self.out = nn.Linear(dims.hidden, dims.embed)
        self.clusters = nn.Parameter(torch.zeros(len(dims.bounds) - 1, dims.embed))
        self.head_bias = nn.Parameter(torch.zeros(dims.bounds[0][1] + len(dims.cutoffs)))
        self.out_proj = nn.ModuleList(nn.Linear(dims.embed, dims.cluster_dim(i), bias=False)
                                      for i in range(1, len(dims.bounds)))
        self.drop = nn.Dropout(dims.dropout)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        out = ids.new_zeros((*ids.shape, self.dims.embed), dtype=torch.float32)
        for i, (start, end) in enumerate(self.dims.bounds):
            mask = (ids >= start) & (ids < end)
            vectors = self.tables[i][ids[mask] - start]
            out[mask] = vectors if i == 0 else self.in_proj[i - 1](vectors)
        return out

    def forward(self, ids: torch.Tensor, targets: torch.Tensor,
                state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The mean negative log-probability of `targets` after `ids` `[B, T]`, and the
        LSTM state to carry on with."""
        hidden, state = self.lstm(self.drop(self.embed(ids)), state)
        states = self.drop(self.out(hidden)).reshape(-1, self.dims.embed)
        targets = targets.reshape(-1)
        head_words = self.dims.bounds[0][1]
        head = torch.log_softmax(
            states @ torch.cat([self.tables[0], self.clusters]).T + self.head_bias, dim=-1)
        in_head = targets < head_words
        log_probs = torch.where(in_head, head.gather(
            1, targets.clamp(max=head_words - 1)[:, None])[:, 0], 0.0)
        for i, (start, end) in enumerate(self.dims.bounds[1:], 1):
            rows = torch.nonzero((targets >= start) & (targets < end))[:, 0]
            tail = torch.log_softmax(self.out_proj[i - 1](states[rows]) @ self.tables[i].T,
                                     dim=-1)
            picked = head[rows, head_words + i - 1] + tail.gather(
                1, (targets[rows] - start)[:, None])[:, 0]
            log_probs = log_probs.index_put((rows,), picked)
        return -log_probs.mean(), state

    def arrays(self) -> dict[str, np.ndarray]:
        """The weights as `RNNLM` reads them (float16)."""
        def half(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy().astype(np.float16)
        out = {f"table{i}": half(t) for i, t in enumerate(self.tables)}
        out |= {f"in_proj{i}": half(m.weight) for i, m in enumerate(self.in_proj, 1)}
        out |= {f"out_proj{i}": half(m.weight) for i, m in enumerate(self.out_proj, 1)}
        out |= {"w_ih": half(self.lstm.weight_ih_l0), "w_hh": half(self.lstm.weight_hh_l0),
                "bias": half(self.lstm.bias_ih_l0 + self.lstm.bias_hh_l0),
                "out_proj": half(self.out.weight), "out_bias": half(self.out.bias),
                "clusters": half(self.clusters), "head_bias": half(self.head_bias)}
        return out


def save_npz(model: WordLSTM, words: Sequence[str], path: str | Path) -> None:
    """Write a trained `WordLSTM` and its words (by id) for `asr.rnnlm.RNNLM`."""
    np.savez_compressed(path, words=np.array(list(words)),
                        cutoffs=np.array(model.dims.cutoffs), **model.arrays())
