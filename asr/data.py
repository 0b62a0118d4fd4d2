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
STORE_SUFFIX = ".int16"  # an AudioStore segment; its index is the .json beside it
STORE_FORMAT = "lstm-asr audio store 1"  # of the index; segments of other formats are ignored
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


def _identity(path: Path) -> str:
    """What an `AudioStore` keeps a recording under: its path, size and modification time."""
    try:
        stat = os.stat(path)
    except OSError:
        return f"{path}\tmissing"
    return f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}"


def _decode(path: Path) -> np.ndarray | str:
    """The recording's samples as int16, or why it could not be read."""
    try:
        audio = load_audio(path)
    except (AudioError, OSError) as error:
        return str(error)
    return np.clip(np.round(audio * STORE_SCALE), -STORE_SCALE, STORE_SCALE - 1).astype(np.int16)


def _segment_indexes(folder: Path) -> dict[Path, dict[str, list[int] | str]]:
    """The recordings of each whole segment of an `AudioStore` folder, by index file."""
    indexes = {}
    for path in sorted(folder.glob("*.json")):
        index = json.loads(path.read_text())
        if (isinstance(index, dict) and index.get("format") == STORE_FORMAT
                and path.with_suffix(STORE_SUFFIX).is_file()):
            indexes[path] = index["recordings"]
    return indexes


def _write_segment(folder: Path, todo: dict[str, Utterance], threads: int,
                   progress: bool) -> tuple[Path, dict[str, list[int] | str]]:
    """Decode the recordings of `todo` (by identity) into a new segment of an `AudioStore`;
    returns its index file and index, as `_segment_indexes` gives them."""
    name = hashlib.sha256("\n".join(todo).encode()).hexdigest()[:24]
    folder.mkdir(parents=True, exist_ok=True)
    # partial files of this process's own: two runs may build the same segment at once, and the
    # second rename then puts the same bytes in place
    partial = folder / f"{name}{STORE_SUFFIX}.{os.getpid()}.partial"
    index: dict[str, list[int] | str] = {}
    offset = 0
    items = list(todo.items())
    bar = tqdm(total=round(sum(u.duration for _, u in items)), unit="s",
               desc="decoding audio into the store", disable=not progress)
    with open(partial, "wb") as out, ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(items), STORE_CHUNK):
            chunk = items[start:start + STORE_CHUNK]
            decoded = pool.map(_decode, [u.audio for _, u in chunk])
            for (identity, _), samples in zip(chunk, decoded, strict=True):
                if isinstance(samples, str):
                    index[identity] = samples
                    continue
                out.write(samples.tobytes())
                index[identity] = [offset, len(samples)]
                offset += len(samples)
            bar.update(round(sum(u.duration for _, u in chunk)))
    bar.close()
    partial.replace(folder / f"{name}{STORE_SUFFIX}")
    partial_index = folder / f"{name}.json.{os.getpid()}.partial"
    partial_index.write_text(json.dumps({"format": STORE_FORMAT, "recordings": index}))
    partial_index.replace(folder / f"{name}.json")  # last: a segment is whole with it
    return folder / f"{name}.json", index


class AudioStore:
    """The decoded 16 kHz audio of a list of utterances, as int16 in memory-mapped segment
    files of a folder.

    `AudioStore.build(folder, utterances)` decodes (in threads, with a progress bar) the
    recordings that no segment of the folder holds yet into a new segment, about 115 MB per
    hour of audio: a corpus that grows, or a subset of one, decodes only what is new. A
    recording is known by its path, size and modification time, so a changed one is decoded
    again. Reading an utterance is then a copy from the page cache instead of a FLAC, Opus or
    MP3 decode, which is what bounds a data-loading worker. A recording that could not be
    decoded keeps its error, given again when it is read.
    """

    def __init__(self, folder: str | Path, utterances: Sequence[Utterance]) -> None:
        self._open(folder, _segment_indexes(Path(folder)), [_identity(u.audio) for u in utterances])

    def _open(self, folder: str | Path, indexes: dict[Path, dict[str, list[int] | str]],
              identities: list[str]) -> None:
        """The store of the recordings `identities` in the segments `indexes` of `folder`."""
        self.segments = [path.with_suffix(STORE_SUFFIX) for path in indexes]
        known: dict[str, tuple[int, int, int] | str] = {}
        for number, index in enumerate(indexes.values()):
            for identity, entry in index.items():
                known[identity] = entry if isinstance(entry, str) else (number, *entry)
        entries = [known.get(identity) for identity in identities]
        missing = sum(entry is None for entry in entries)
        if missing:
            raise FileNotFoundError(f"{folder}: the audio store lacks {missing} of the "
                                    f"{len(entries)} recordings; build it with AudioStore.build")
        self.entries: list[tuple[int, int, int] | str] = entries  # type: ignore[assignment]
        self._maps: dict[int, np.ndarray] = {}  # segments mapped so far, in this process

    @classmethod
    def build(cls, folder: str | Path, utterances: Sequence[Utterance],
              threads: int = CHECK_THREADS, progress: bool = True) -> AudioStore:
        """The store of `utterances` under `folder`, decoding the recordings it lacks."""
        folder = Path(folder)
        indexes = _segment_indexes(folder)
        identities = [_identity(u.audio) for u in utterances]
        known = {identity for index in indexes.values() for identity in index}
        todo = {}  # identity -> utterance, each recording once
        for identity, u in zip(identities, utterances, strict=True):
            if identity not in known:
                todo.setdefault(identity, u)
        if todo:
            path, index = _write_segment(folder, todo, threads, progress)
            indexes = dict(sorted({**indexes, path: index}.items()))  # as _segment_indexes
        store = cls.__new__(cls)  # indexes and identities are read once, here
        store._open(folder, indexes, identities)
        return store

    def __len__(self) -> int:
        return len(self.entries)

    def __getstate__(self) -> dict:  # DataLoader workers map the files themselves
        return {**self.__dict__, "_maps": {}}

    def read(self, index: int) -> np.ndarray:
        """Utterance `index`'s samples as float32 in [-1, 1]; `AudioError` if unreadable."""
        entry = self.entries[index]
        if isinstance(entry, str):
            raise AudioError(entry)
        segment, start, length = entry
        if not length:
            return np.zeros(0, np.float32)
        if segment not in self._maps:
            self._maps[segment] = np.memmap(self.segments[segment], dtype=np.int16, mode="r")
        return self._maps[segment][start:start + length].astype(np.float32) / STORE_SCALE


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
