"""Training batches: an utterance dataset with augmentation and a duration-bucketing sampler,
and an optional store of the decoded audio (`AudioStore`), so that training decodes each
recording once instead of once an epoch.

A recording that cannot be read never stops training: `check_audio` finds the missing and
unreadable ones before the first step, and one that fails later is left out of its batch
(`Batch.errors` says which and why).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from asr.audio import AudioError, load_audio
from asr.augment import AugmentConfig, WaveformAugmenter
from asr.corpora import Utterance
from asr.text import Vocabulary

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # save and stop; DataLoader workers ignore them
CHECK_THREADS = 8  # header reads in flight (file systems over a network answer slowly)
STORE_VERSION = 1  # of the AudioStore file layout; part of its key
STORE_SCALE = 32768.0  # float samples in [-1, 1] <-> int16, as soundfile scales 16-bit PCM
STORE_CHUNK = 256  # recordings decoded at a time while a store is built


class Item(NamedTuple):
    """One utterance of a `SpeechDataset`; `audio` is None when it could not be read."""

    index: int
    audio: Tensor | None
    target: Tensor
    error: str = ""


class Batch(NamedTuple):
    """Right-padded audio `[B, N]`, targets concatenated as CTC expects, the dataset indices of
    the rows, and why the items left out could not be read."""

    audio: Tensor
    audio_lengths: Tensor
    targets: Tensor
    target_lengths: Tensor
    indices: list[int]
    errors: list[str]


def audio_problem(path: Path) -> str | None:
    """Why `path` cannot be training audio, judged from its header; None when it looks fine.
    A file libsndfile cannot open is decoded in full (it may be one for ffmpeg)."""
    try:
        if path.stat().st_size == 0:
            return f"{path}: the file is empty"
        if sf.info(path).frames > 0:
            return None
        return f"{path}: contains no audio samples"
    except FileNotFoundError:
        return f"{path}: no such file"
    except OSError as error:
        return f"{path}: {error.strerror or error}"
    except (sf.LibsndfileError, RuntimeError, TypeError):
        try:
            load_audio(path)
        except AudioError as error:
            return str(error)
    return None


def check_audio(utterances: Sequence[Utterance]) -> tuple[list[Utterance], list[str]]:
    """The utterances whose audio looks readable, and the problems of the others, in order."""
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        problems = list(pool.map(audio_problem, [u.audio for u in utterances]))
    good = [u for u, problem in zip(utterances, problems, strict=True) if problem is None]
    return good, [problem for problem in problems if problem is not None]


def start_workers(loader: DataLoader) -> Iterator[Batch]:
    """`iter(loader)`: its worker processes start with SIGTERM and SIGINT held back (pending)
    until `ignore_stop_signals` runs in them, so that a signal to the whole process group (from
    systemd, SLURM, Kubernetes or Ctrl-C) reaches only the main process, which saves and then
    stops the workers itself."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader `worker_init_fn` for `start_workers`: the worker ignores SIGTERM and SIGINT."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _store_key(utterances: Sequence[Utterance]) -> str:
    """What an `AudioStore` of `utterances` depends on: each recording's path, size and
    modification time, in order."""
    digest = hashlib.sha256(f"audio-store {STORE_VERSION}\n".encode())
    for u in utterances:
        try:
            stat = os.stat(u.audio)
            digest.update(f"{u.audio}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{u.audio}\tmissing\n".encode())
    return digest.hexdigest()[:24]


def _decode(path: Path) -> np.ndarray | str:
    """The recording's samples as int16, or why it could not be read."""
    try:
        audio = load_audio(path)
    except (AudioError, OSError) as error:
        return str(error)
    return np.clip(np.round(audio * STORE_SCALE), -STORE_SCALE, STORE_SCALE - 1).astype(np.int16)


class AudioStore:
    """The decoded 16 kHz audio of a list of utterances in one int16 file, memory-mapped.

    `AudioStore.build(folder, utterances)` decodes every recording once (in threads, with a
    progress bar), about 115 MB per hour of audio; a store whose recordings are unchanged
    (path, size, modification time) is reused. Reading an utterance is then a copy from the page
    cache instead of a FLAC, Opus or MP3 decode, which is what bounds a data-loading worker.
    A recording that could not be decoded keeps its error, given again when it is read.
    """

    def __init__(self, folder: str | Path, utterances: Sequence[Utterance]) -> None:
        key = _store_key(utterances)
        self.samples_path = Path(folder) / f"{key}.int16"
        index_path = Path(folder) / f"{key}.json"
        if not index_path.is_file():
            raise FileNotFoundError(f"{index_path}: no audio store for these recordings; "
                                    "build it with AudioStore.build")
        index = json.loads(index_path.read_text())
        self.offsets = np.asarray(index["offsets"], dtype=np.int64)
        self.lengths = np.asarray(index["lengths"], dtype=np.int64)
        self.errors: dict[int, str] = {int(k): v for k, v in index["errors"].items()}
        self._samples: np.ndarray | None = None  # mapped on first read, in each process

    @classmethod
    def build(cls, folder: str | Path, utterances: Sequence[Utterance],
              threads: int = CHECK_THREADS, progress: bool = True) -> AudioStore:
        """The store of `utterances` under `folder`, decoding them first unless it exists."""
        folder = Path(folder)
        key = _store_key(utterances)
        if (folder / f"{key}.json").is_file():
            return cls(folder, utterances)
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f"{key}.int16.partial"
        offsets, lengths, errors, offset = [], [], {}, 0
        bar = tqdm(total=round(sum(u.duration for u in utterances)), unit="s",
                   desc="decoding audio into the store", disable=not progress)
        with open(partial, "wb") as out, ThreadPoolExecutor(threads) as pool:
            for start in range(0, len(utterances), STORE_CHUNK):
                chunk = utterances[start:start + STORE_CHUNK]
                for i, samples in enumerate(pool.map(_decode, [u.audio for u in chunk]),
                                            start):
                    if isinstance(samples, str):
                        errors[i], samples = samples, np.zeros(0, np.int16)
                    out.write(samples.tobytes())
                    offsets.append(offset)
                    lengths.append(len(samples))
                    offset += len(samples)
                bar.update(round(sum(u.duration for u in chunk)))
        bar.close()
        partial.replace(folder / f"{key}.int16")
        index = {"offsets": offsets, "lengths": lengths, "errors": errors,
                 "audio": [str(u.audio) for u in utterances]}
        partial_index = folder / f"{key}.json.partial"
        partial_index.write_text(json.dumps(index))
        partial_index.replace(folder / f"{key}.json")  # last: its presence means complete
        return cls(folder, utterances)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getstate__(self) -> dict:  # DataLoader workers map the file themselves
        return {**self.__dict__, "_samples": None}

    def read(self, index: int) -> np.ndarray:
        """Utterance `index`'s samples as float32 in [-1, 1]; `AudioError` if unreadable."""
        if index in self.errors:
            raise AudioError(self.errors[index])
        if not self.lengths[index]:
            return np.zeros(0, np.float32)
        if self._samples is None:
            self._samples = np.memmap(self.samples_path, dtype=np.int16, mode="r")
        start = self.offsets[index]
        return self._samples[start:start + self.lengths[index]].astype(np.float32) / STORE_SCALE


class SpeechDataset(Dataset):
    """Audio and token ids of utterances; augmentation is seeded by (seed, epoch, index), so a
    resumed run sees exactly the audio the interrupted one would have. With a `store` (of the
    same utterances) the audio comes from it rather than from the files."""

    def __init__(self, utterances: Sequence[Utterance], vocab: Vocabulary,
                 augment: AugmentConfig | None = None, seed: int = 0,
                 store: AudioStore | None = None) -> None:
        self.utterances = list(utterances)
        if store is not None and len(store) != len(self.utterances):
            raise ValueError(f"the audio store holds {len(store)} recordings, not "
                             f"{len(self.utterances)}")
        self.targets = [vocab.encode(u.text) for u in self.utterances]
        self.augmenter = WaveformAugmenter(augment) if augment else None
        self.seed = seed
        self.epoch = 0
        self.store = store

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> Item:
        target = torch.tensor(self.targets[index], dtype=torch.long)
        try:
            audio = (self.store.read(index) if self.store is not None
                     else load_audio(self.utterances[index].audio))
        except (AudioError, OSError) as error:
            return Item(index, None, target, str(error))
        if self.augmenter:
            audio = self.augmenter(audio, np.random.default_rng([self.seed, self.epoch, index]))
        return Item(index, torch.from_numpy(audio), target)


def collate(items: list[Item]) -> Batch:
    """Right-pad the readable items' audio into a `Batch`; the others only leave their error."""
    good = [item for item in items if item.audio is not None]
    audio_lengths = torch.tensor([len(item.audio) for item in good], dtype=torch.long)
    audio = torch.zeros(len(good), max(audio_lengths.tolist(), default=0))
    for row, item in enumerate(good):
        audio[row, : len(item.audio)] = item.audio
    targets = [item.target for item in good]
    return Batch(audio, audio_lengths, torch.cat([torch.zeros(0, dtype=torch.long), *targets]),
                 torch.tensor([len(t) for t in targets], dtype=torch.long),
                 [item.index for item in good],
                 [item.error for item in items if item.audio is None])


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
