"""Offline recognition of recordings and files with a bidirectional (or any) model file."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from asr.audio import MIN_SECONDS, SAMPLE_RATE, check_sample_rate, mono_float32, resample
from asr.checkpoint import load_model
from asr.decode import Transcript, greedy_decode
from asr.defaults import BEAM_SIZE, LM_WEIGHT, OFFLINE_MODEL, WORD_SCORE
from asr.results import FileError, FileResult, transcribe_files

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

    Greedy CTC decoding, or beam search with a KenLM word n-gram when `lm` is given.
    """

    def __init__(self, model: str | Path = OFFLINE_MODEL, lm: str | Path | None = None,
                 beam_size: int = BEAM_SIZE, lm_weight: float = LM_WEIGHT,
                 word_score: float = WORD_SCORE, device: str | None = None,
                 batch_seconds: float = 120.0) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_model(model, self.device)
        self.batch_seconds = batch_seconds
        self.beam = None
        if lm is not None:
            from asr.beam import BeamSearchDecoder

            self.beam = BeamSearchDecoder(self.model.vocab, lm, beam_size=beam_size,
                                          lm_weight=lm_weight, word_score=word_score)

    def _decode(self, log_probs: np.ndarray, offset: float) -> Transcript:
        if self.beam is not None:
            return self.beam.decode(log_probs, self.model.frame_seconds, offset)
        return greedy_decode(log_probs, self.model.vocab, self.model.frame_seconds, offset)

    @torch.no_grad()
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
        lengths = torch.tensor([len(s) for _, _, s in batch])
        audio = torch.zeros(len(batch), int(lengths.max()))
        for row, (_, _, samples) in enumerate(batch):
            audio[row, : len(samples)] = torch.from_numpy(samples)
        log_probs, out_lengths = self.model.transcribe_audio(audio.to(self.device), lengths)
        log_probs = log_probs.float().cpu().numpy()
        for row, (index, start, _) in enumerate(batch):
            pieces[index].append((start, self._decode(log_probs[row, : out_lengths[row]],
                                                      start / SAMPLE_RATE)))

    def transcribe(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Transcript:
        """One recording: float samples in [-1, 1] or int16, `[n]` or `[n, channels]`
        (averaged), at `sample_rate` (resampled to 16 kHz). Raises `TypeError`/`ValueError`
        for other input (a bad rate, empty audio, NaN)."""
        rate = check_sample_rate(sample_rate)
        return self.transcribe_many([resample(mono_float32(audio), rate)])[0]

    def transcribe_files(self, paths: Iterable[str], files_per_batch: int = 16,
                         on_file: Callable[[], None] | None = None,
                         ) -> Iterator[FileResult | FileError]:
        """Results in input order; an unreadable file yields a `FileError`, the rest go on."""
        return transcribe_files(self.transcribe_many, paths, files_per_batch, on_file)


def _join(pieces: list[tuple[int, Transcript]]) -> Transcript:
    words = [w for _, t in pieces for w in t.words]
    return Transcript(" ".join(w.word for w in words), words)
