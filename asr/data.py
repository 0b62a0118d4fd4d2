"""Training batches: an utterance dataset with augmentation and a duration-bucketing sampler."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from asr.audio import load_audio
from asr.augment import AugmentConfig, WaveformAugmenter
from asr.corpora import Utterance
from asr.text import Vocabulary

Batch = tuple[Tensor, Tensor, Tensor, Tensor]  # audio, audio lengths, targets, target lengths


class SpeechDataset(Dataset):
    """Audio and token ids of utterances; augmentation is seeded by (seed, epoch, index), so a
    resumed run sees exactly the audio the interrupted one would have."""

    def __init__(self, utterances: Sequence[Utterance], vocab: Vocabulary,
                 augment: AugmentConfig | None = None, seed: int = 0) -> None:
        self.utterances = list(utterances)
        self.targets = [vocab.encode(u.text) for u in self.utterances]
        self.augmenter = WaveformAugmenter(augment) if augment else None
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        audio = load_audio(self.utterances[index].audio)
        if self.augmenter:
            audio = self.augmenter(audio, np.random.default_rng([self.seed, self.epoch, index]))
        return torch.from_numpy(audio), torch.tensor(self.targets[index], dtype=torch.long)


def collate(items: list[tuple[Tensor, Tensor]]) -> Batch:
    """Right-pad audio into `[B, N]`; concatenate targets as CTC expects."""
    audio_lengths = torch.tensor([len(a) for a, _ in items])
    audio = torch.zeros(len(items), int(audio_lengths.max()))
    for i, (a, _) in enumerate(items):
        audio[i, : len(a)] = a
    target_lengths = torch.tensor([len(t) for _, t in items])
    return audio, audio_lengths, torch.cat([t for _, t in items]), target_lengths


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length utterances holding at most `max_seconds` of padded audio.

    Batch composition and order depend only on (seed, epoch); with `sortagrad` the first
    epoch goes from short to long utterances, which helps CTC off its all-blank start. With
    `world_size` > 1 each rank takes every `world_size`-th batch, all ranks the same number.
    `skip` drops the first batches of the epoch (to resume mid-epoch).
    """

    def __init__(self, durations: Sequence[float], max_seconds: float, seed: int = 0,
                 shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 sortagrad: bool = False) -> None:
        self.durations = np.asarray(durations, dtype=np.float64)
        if len(self.durations) and self.durations.max() > max_seconds:
            raise ValueError(f"an utterance of {self.durations.max():.1f} s is longer than the "
                             f"batch limit of {max_seconds} s; raise --batch-seconds")
        self.max_seconds = max_seconds
        self.seed, self.shuffle, self.rank, self.world_size = seed, shuffle, rank, world_size
        self.sortagrad = sortagrad
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _all_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        jitter = rng.uniform(0.95, 1.05, len(self.durations)) if self.shuffle else 1.0
        order = np.argsort(self.durations * jitter, kind="stable")
        batches, current, longest = [], [], 0.0
        for index in order:
            longest_if_added = max(longest, self.durations[index])
            if current and longest_if_added * (len(current) + 1) > self.max_seconds:
                batches.append(current)
                current, longest_if_added = [], self.durations[index]
            current.append(int(index))
            longest = longest_if_added
        if current:
            batches.append(current)
        if self.shuffle and not (self.sortagrad and self.epoch == 0):
            rng.shuffle(batches)
        usable = len(batches) - len(batches) % self.world_size or len(batches)
        return batches[:usable][self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self._all_batches())

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._all_batches()[self.skip :]
