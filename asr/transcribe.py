"""Offline recognition of recordings and files with a bidirectional (or any) model file."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from asr.audio import SAMPLE_RATE
from asr.checkpoint import load_model
from asr.decode import Transcript, greedy_decode
from asr.defaults import BEAM_SIZE, LM_WEIGHT, OFFLINE_MODEL, WORD_SCORE
from asr.results import FileError, FileResult, transcribe_files

MAX_SEGMENT_SECONDS = 20.0  # longer audio is cut at its quietest point before this
SPLIT_SEARCH_SECONDS = 5.0  # how far back from the limit a cut may go
SILENCE_RMS = 10 ** (-70 / 20)  # quieter segments (digital silence) are not decoded


def split_points(audio: np.ndarray, max_seconds: float = MAX_SEGMENT_SECONDS,
                 sample_rate: int = SAMPLE_RATE) -> list[int]:
    """Sample offsets where long audio is cut: the quietest 10 ms in the last
    `SPLIT_SEARCH_SECONDS` before each `max_seconds` limit."""
    window, limit = sample_rate // 100, int(max_seconds * sample_rate)
    search = int(SPLIT_SEARCH_SECONDS * sample_rate)
    starts = [0]
    while len(audio) - starts[-1] > limit:
        begin = starts[-1] + limit - search
        region = audio[begin : starts[-1] + limit]
        energy = (region[: len(region) // window * window].reshape(-1, window) ** 2).sum(1)
        starts.append(begin + int(energy.argmin()) * window)
    return starts


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
    def transcribe_many(self, recordings: list[np.ndarray]) -> list[Transcript]:
        """Transcripts of 16 kHz mono recordings; long ones are cut into segments."""
        segments = []  # (recording index, start sample, samples)
        for index, audio in enumerate(recordings):
            cuts = [*split_points(audio), len(audio)]
            segments += [(index, a, audio[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)
                         if np.sqrt(np.sum(audio[a:b] ** 2) / max(b - a, 1)) >= SILENCE_RMS]
        segments.sort(key=lambda s: len(s[2]))
        pieces: dict[int, list[tuple[int, Transcript]]] = {i: [] for i in range(len(recordings))}
        batch: list[tuple[int, int, np.ndarray]] = []
        for segment in [*segments, None]:
            full = batch and (segment is None or len(segment[2]) * (len(batch) + 1)
                              > self.batch_seconds * SAMPLE_RATE)
            if full:
                for (index, start, _), transcript in zip(batch, self._run(batch), strict=True):
                    pieces[index].append((start, transcript))
                batch = []
            if segment is not None:
                batch.append(segment)
        return [_join(sorted(pieces[i], key=lambda p: p[0])) for i in range(len(recordings))]

    def _run(self, batch: list[tuple[int, int, np.ndarray]]) -> list[Transcript]:
        lengths = torch.tensor([len(s) for _, _, s in batch])
        audio = torch.zeros(len(batch), int(lengths.max()))
        for row, (_, _, samples) in enumerate(batch):
            audio[row, : len(samples)] = torch.from_numpy(samples)
        log_probs, out_lengths = self.model.transcribe_audio(audio.to(self.device), lengths)
        log_probs = log_probs.float().cpu().numpy()
        return [self._decode(log_probs[row, : out_lengths[row]], start / SAMPLE_RATE)
                for row, (_, start, _) in enumerate(batch)]

    def transcribe(self, audio: np.ndarray) -> Transcript:
        return self.transcribe_many([audio])[0]

    def transcribe_files(self, paths: Iterable[str], files_per_batch: int = 16,
                         on_file: Callable[[], None] | None = None,
                         ) -> Iterator[FileResult | FileError]:
        """Results in input order; an unreadable file yields a `FileError`, the rest go on."""
        return transcribe_files(self.transcribe_many, paths, files_per_batch, on_file)


def _join(pieces: list[tuple[int, Transcript]]) -> Transcript:
    words = [w for _, t in pieces for w in t.words]
    return Transcript(" ".join(w.word for w in words), words)
