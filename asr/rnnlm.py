"""A word LSTM language model that rescores the beam search's n-best lists.

Words are split by frequency into a few clusters (`LMDims.cutoffs`); rarer clusters get
smaller vectors, which the input embedding and the output softmax share (an adaptive input
and an adaptive softmax with tied tables). `asr.rnnlm_torch.WordLSTM` is the torch model for
training; `RNNLM` scores sentences with numpy alone from the `.npz` file that
`asr.rnnlm_torch.save_npz` writes, so inference needs no torch. It scores on one BLAS
thread: numpy's default of one per core made recognition up to 1.9 times slower whenever
anything else ran (RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

END = "</s>"  # ends each sentence and is the context of its first word
UNKNOWN = "<unk>"


@dataclass(frozen=True)
class LMDims:
    vocab_size: int
    cutoffs: tuple[int, ...] = (2000, 10000)  # first word index of each rarer cluster
    embed: int = 256  # the vector of the most frequent words; cluster i has embed // div ** i
    hidden: int = 512
    div: int = 4
    dropout: float = 0.1

    @property
    def bounds(self) -> list[tuple[int, int]]:
        """Each cluster's `[start, end)` word ids."""
        edges = [0, *self.cutoffs, self.vocab_size]
        return list(zip(edges[:-1], edges[1:], strict=True))

    def cluster_dim(self, i: int) -> int:
        return self.embed // self.div ** i


def _lstm_gates(x: np.ndarray, h: np.ndarray, c: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray,
                bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step of torch's LSTM cell (gates i, f, g, o) on a batch."""
    gates = x @ w_ih.T + h @ w_hh.T + bias
    i, f, g, o = np.split(gates, 4, axis=-1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c), c


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class RNNLM:
    """Sentence log-probabilities (natural log) from a `save_npz` file; immutable and
    thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with np.load(self.path, allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files}
        except (OSError, ValueError) as error:
            raise ValueError(f"{self.path}: not a word LSTM LM file ({error})") from None
        words = [str(w) for w in arrays.pop("words")]
        self.index = {w: i for i, w in enumerate(words)}
        self.end, self.unknown = self.index[END], self.index[UNKNOWN]
        cutoffs = tuple(int(c) for c in arrays.pop("cutoffs"))
        self.bounds = LMDims(len(words), cutoffs).bounds
        self.w = {name: a.astype(np.float32) for name, a in arrays.items()}
        # the head softmax's weights: the frequent words' vectors, then one per rarer cluster
        self._head = np.concatenate([self.w["table0"], self.w["clusters"]]).T
        self._threads = ThreadpoolController()

    def ids(self, sentence: str) -> list[int]:
        return [self.index.get(w, self.unknown) for w in sentence.split()] + [self.end]

    def _embed(self, ids: np.ndarray) -> np.ndarray:
        out = np.zeros((*ids.shape, self.w["table0"].shape[1]), dtype=np.float32)
        for i, (start, end) in enumerate(self.bounds):
            mask = (ids >= start) & (ids < end)
            vectors = self.w[f"table{i}"][ids[mask] - start]
            out[mask] = vectors if i == 0 else vectors @ self.w[f"in_proj{i}"].T
        return out

    def score(self, sentences: Sequence[str]) -> np.ndarray:
        """Each sentence's log-probability, its end included."""
        if not sentences:
            return np.zeros(0, dtype=np.float64)
        with self._threads.limit(limits=1, user_api="blas"):
            return self._score(sentences)

    def _score(self, sentences: Sequence[str]) -> np.ndarray:
        seqs = [self.ids(s) for s in sentences]
        steps = max(map(len, seqs))
        targets = np.full((len(seqs), steps), -1, dtype=np.int64)
        for row, seq in zip(targets, seqs, strict=True):
            row[:len(seq)] = seq
        inputs = np.concatenate([np.full((len(seqs), 1), self.end), targets[:, :-1]], axis=1)
        x = self._embed(np.maximum(inputs, 0))
        hidden = self.w["w_hh"].shape[1]
        h = np.zeros((len(seqs), hidden), dtype=np.float32)
        c = np.zeros_like(h)
        outputs = []
        for t in range(steps):
            h, c = _lstm_gates(x[:, t], h, c, self.w["w_ih"], self.w["w_hh"], self.w["bias"])
            outputs.append(h)
        states = np.stack(outputs, axis=1) @ self.w["out_proj"].T + self.w["out_bias"]
        log_probs = self._target_log_probs(states.reshape(-1, states.shape[-1]),
                                           targets.reshape(-1))
        return log_probs.reshape(len(seqs), steps).sum(axis=1)

    def _target_log_probs(self, states: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """log P(target | state) per row; 0 where the target is -1 (padding)."""
        head_words = self.bounds[0][1]
        head = _log_softmax(states @ self._head + self.w["head_bias"])
        out = np.zeros(len(targets), dtype=np.float64)
        first = (targets >= 0) & (targets < head_words)
        out[first] = head[first, targets[first]]
        for i, (start, end) in enumerate(self.bounds[1:], 1):
            rows = np.flatnonzero((targets >= start) & (targets < end))
            if rows.size == 0:
                continue
            logits = (states[rows] @ self.w[f"out_proj{i}"].T) @ self.w[f"table{i}"].T
            tail = _log_softmax(logits)
            out[rows] = head[rows, head_words + i - 1] + tail[np.arange(rows.size),
                                                              targets[rows] - start]
        return out
