"""Offline recognition of recordings and files with the offline ONNX model (numpy and
onnxruntime only: no torch)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from asr import __version__
from asr.audio import MIN_SECONDS, SAMPLE_RATE, check_sample_rate, mono_float32, resample
from asr.decode import Transcript, greedy_decode
from asr.defaults import (
    DEFAULT_DECODING,
    LANGUAGE_MODEL,
    OFFLINE_MODEL_TYPE,
    OFFLINE_ONNX,
    THREADS,
    Decoding,
    cache_dir,
)
from asr.results import FileError, FileResult, transcribe_files
from asr.text import Vocabulary
from streaming.engine import onnx_session

MAX_SEGMENT_SECONDS = 20.0  # longer audio is cut at its quietest point before this
SPLIT_SEARCH_SECONDS = 5.0  # how far back from the limit a cut may go
SILENCE_RMS = 10 ** (-70 / 20)  # quieter segments (digital silence) are not decoded


def cut_segments(blocks: Iterable[np.ndarray], max_seconds: float = MAX_SEGMENT_SECONDS,
                 sample_rate: int = SAMPLE_RATE) -> Iterator[tuple[int, np.ndarray]]:
    """Audio arriving in blocks of any size as `(start sample, samples)` segments of at most
    `max_seconds`, each cut at the quietest 10 ms in the last `SPLIT_SEARCH_SECONDS` before
    the limit; only about one segment is held at a time."""
    window, limit = sample_rate // 100, int(max_seconds * sample_rate)
    search = int(SPLIT_SEARCH_SECONDS * sample_rate)
    start, held, size = 0, [], 0
    for block in blocks:
        held.append(block)
        size += len(block)
        if size <= limit:
            continue
        audio = np.concatenate(held)
        while len(audio) > limit:
            region = audio[limit - search : limit]
            energy = (region[: len(region) // window * window].reshape(-1, window) ** 2).sum(1)
            cut = limit - search + int(energy.argmin()) * window
            yield start, audio[:cut]
            start, audio = start + cut, audio[cut:]
        held, size = [audio], len(audio)
    if size:
        yield start, np.concatenate(held)


class Recognizer:
    """Loads a model once and transcribes many recordings, batched by length.

    `model`: an offline ONNX model (`export.onnx_export.export_offline_onnx`; default the
    bundled one), or a PyTorch checkpoint (`asr train`'s model.pt; needs the `train` extra: it
    is exported to ONNX once and cached). `lm`: a KenLM word n-gram for beam search (default
    the bundled one), or None for greedy decoding; `decoding`: the beam search's settings.
    `threads`: onnxruntime's threads within operators (0: one per core). Transcripts do not
    depend on `threads`.
    """

    def __init__(self, model: str | Path = OFFLINE_ONNX, lm: str | Path | None = LANGUAGE_MODEL,
                 decoding: Decoding = DEFAULT_DECODING, threads: int = THREADS,
                 batch_seconds: float = 120.0) -> None:
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model not found: {path}")
        if _is_checkpoint(path):
            path = checkpoint_onnx(path)
        try:
            self.session = onnx_session(path, threads)
        except Exception as error:  # onnxruntime's own error types: not ONNX, or damaged
            raise ValueError(f"{model}: not a readable ONNX model ({error})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("model_type") != OFFLINE_MODEL_TYPE:
            raise ValueError(f"{model}: not an offline model (an ONNX file made by "
                             "export_offline_onnx, or a model.pt); a streaming model runs "
                             "with --streaming")
        self.vocab = Vocabulary(tuple(json.loads(meta["vocabulary"])))
        self.frame_seconds = float(meta["frame_seconds"])
        self.batch_seconds = batch_seconds
        self.beam = None
        if lm is not None:
            from asr.beam import BeamSearchDecoder

            self.beam = BeamSearchDecoder(self.vocab, lm, **asdict(decoding))

    def _decode(self, log_probs: np.ndarray, offset: float) -> Transcript:
        if self.beam is not None:
            return self.beam.decode(log_probs, self.frame_seconds, offset)
        return greedy_decode(log_probs, self.vocab, self.frame_seconds, offset)

    def transcribe_many(self, recordings: Sequence[np.ndarray | Iterable[np.ndarray]],
                        ) -> list[Transcript]:
        """Transcripts of 16 kHz mono recordings, each an array or blocks read as they come
        (an `asr.audio.AudioStream`: a long file is never whole in memory). They are cut into
        segments of at most `MAX_SEGMENT_SECONDS`, batched together by length; silent
        segments and those shorter than `MIN_SECONDS` are not decoded."""
        pieces: list[list[tuple[int, Transcript]]] = [[] for _ in recordings]
        pool: list[tuple[int, int, np.ndarray]] = []  # (recording index, start, samples)
        pooled, shortest = 0, round(MIN_SECONDS * SAMPLE_RATE)
        for index, recording in enumerate(recordings):
            blocks = ([mono_float32(recording)] if isinstance(recording, np.ndarray)
                      else recording)
            for start, samples in cut_segments(blocks):
                if (len(samples) < shortest
                        or np.sqrt(np.sum(samples ** 2) / len(samples)) < SILENCE_RMS):
                    continue
                pool.append((index, start, samples))
                pooled += len(samples)
                if pooled > self.batch_seconds * SAMPLE_RATE:
                    pool = self._run_batches(pool, pieces, keep_last=True)
                    pooled = sum(len(s) for _, _, s in pool)
        self._run_batches(pool, pieces, keep_last=False)
        return [_join(sorted(p, key=lambda piece: piece[0])) for p in pieces]

    def _run_batches(self, pool: list[tuple[int, int, np.ndarray]],
                     pieces: list[list[tuple[int, Transcript]]], keep_last: bool,
                     ) -> list[tuple[int, int, np.ndarray]]:
        """Decode the pooled segments, shortest first, in batches of at most `batch_seconds`
        padded audio, adding `(start, transcript)` to their recording's pieces; with
        `keep_last` the last, partly filled batch is returned undecoded."""
        batch: list[tuple[int, int, np.ndarray]] = []
        for segment in sorted(pool, key=lambda s: len(s[2])):
            if batch and len(segment[2]) * (len(batch) + 1) > self.batch_seconds * SAMPLE_RATE:
                self._run(batch, pieces)
                batch = []
            batch.append(segment)
        if batch and not keep_last:
            self._run(batch, pieces)
            batch = []
        return batch

    def _run(self, batch: list[tuple[int, int, np.ndarray]],
             pieces: list[list[tuple[int, Transcript]]]) -> None:
        lengths = np.array([len(s) for _, _, s in batch], dtype=np.int64)
        audio = np.zeros((len(batch), int(lengths.max())), dtype=np.float32)
        for row, (_, _, samples) in enumerate(batch):
            audio[row, : len(samples)] = samples
        log_probs, out_lengths = self.session.run(
            None, {"audio": audio, "audio_lengths": lengths})
        for row, (index, start, _) in enumerate(batch):
            pieces[index].append((start, self._decode(log_probs[row, : out_lengths[row]],
                                                      start / SAMPLE_RATE)))

    def transcribe(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Transcript:
        """One recording: float samples in [-1, 1] or int16, `[n]` or `[n, channels]`
        (averaged), at `sample_rate` (resampled to 16 kHz). Raises `TypeError`/`ValueError`
        for other input (a bad rate, empty audio, NaN)."""
        rate = check_sample_rate(sample_rate)
        return self.transcribe_many([resample(mono_float32(audio), rate)])[0]

    def transcribe_files(self, paths: Iterable[str],
                         on_file: Callable[[FileResult | FileError], None] | None = None,
                         ) -> Iterator[FileResult | FileError]:
        """Results in input order; an unreadable file yields a `FileError`, the rest go on.
        `on_file` is called with each result as it is ready (see `asr.results`)."""
        return transcribe_files(self.transcribe_many, paths, on_file=on_file)


def _join(pieces: list[tuple[int, Transcript]]) -> Transcript:
    words = [w for _, t in pieces for w in t.words]
    return Transcript(" ".join(w.word for w in words), words)


def _is_checkpoint(path: Path) -> bool:
    """Whether `path` is an `asr train` model file rather than an ONNX file: a PyTorch zip
    archive, or the JSON index of one stored in parts (`asr.checkpoint.atomic_save`: every
    fp32 model of the default size). An ONNX file starts with a protobuf tag, never `{`."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"PK\x03\x04" or head.startswith(b"{")


def checkpoint_onnx(checkpoint: Path) -> Path:
    """The offline ONNX export of a PyTorch checkpoint, made once (needs torch and onnx: the
    `train` extra) and cached by the checkpoint's content in `cache_dir()`."""
    digest = hashlib.sha256(checkpoint.read_bytes() + __version__.encode()).hexdigest()[:32]
    target = cache_dir() / f"offline-{digest}.onnx"
    if target.is_file():
        return target
    try:
        from asr.checkpoint import load_model
        from export.onnx_export import export_offline_onnx
    except ImportError as error:
        raise ValueError(f"{checkpoint} is a PyTorch checkpoint: running it needs the training "
                         f"extra (pip install 'lstm-asr[train]'), missing {error.name}") from None
    model = load_model(checkpoint)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as folder:
        (fp32,) = export_offline_onnx(model, folder, int8=False)
        os.replace(fp32, target)
    return target
