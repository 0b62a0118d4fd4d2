"""Streaming recognition with an exported ONNX model (`asr export`): audio in buffers of any
size and sample rate, greedy partial results, endpointing, and final results optionally
re-decoded by a beam search with a word language model. Needs numpy, onnxruntime and soxr
(and flashlight-text for the LM) only, no torch.

Typical loop::

    recognizer = StreamingRecognizer()
    for buffer in microphone:
        recognizer.accept_waveform(buffer, rate)
        print(recognizer.partial_result().text)
        if recognizer.is_endpoint():
            print(recognizer.final_result())
    print(recognizer.final_result())

Model and streams apart (as sherpa-onnx's OnlineRecognizer/OnlineStream, Vosk's
Model/KaldiRecognizer): one `StreamingModel` holds the ONNX session and the LM, loaded once and
thread-safe; `model.stream()` makes a light `Stream` holding one stream's state.
`StreamingRecognizer` is a model with its one stream. A stream is not thread-safe: a call made
while another thread's call on the same stream is running raises `RuntimeError`.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import numpy as np
import onnxruntime as ort
import soxr

from asr.audio import (
    MIN_SECONDS,
    RESAMPLE_QUALITY,
    AudioStream,
    check_sample_rate,
    mono_float32,
)
from asr.decode import Transcript, Word, greedy_tokens, words_from_tokens
from asr.defaults import (
    DEFAULT_DECODING,
    LANGUAGE_MODEL,
    STREAMING_MODEL,
    THREADS,
    Decoding,
)
from asr.results import FileError, FileResult, transcribe_files
from asr.text import Vocabulary
from streaming.endpoint import EndpointConfig, EndpointDetector

MODEL_TYPE = "lstm-ctc-streaming"  # metadata `model_type` of `asr export` models
DEFAULT_ENDPOINT = EndpointConfig()
STATE_PREFIX, NEXT_STATE_PREFIX = "state_", "next_state_"
_ONNX_DTYPES = {"tensor(int64)": np.int64, "tensor(float)": np.float32}
_P = ParamSpec("_P")
_T = TypeVar("_T")


def _one_thread(method: Callable[Concatenate[Stream, _P], _T],
                ) -> Callable[Concatenate[Stream, _P], _T]:
    """Run `method` holding the stream's lock; a call from another thread meanwhile raises
    instead of mixing two streams' audio and state."""

    @functools.wraps(method)
    def locked(self: Stream, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(f"{type(self).__name__} is not thread-safe and another thread "
                               "is using this one; create one per stream (per thread)")
        try:
            return method(self, *args, **kwargs)
        finally:
            self._lock.release()

    return locked


def onnx_session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU onnxruntime session using `threads` threads within operators."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def zero_state(session: ort.InferenceSession) -> dict[str, np.ndarray]:
    """The initial (all-zero) `state_*` inputs of a streaming session."""
    return {i.name: np.zeros(i.shape, dtype=_ONNX_DTYPES[i.type])
            for i in session.get_inputs() if i.name.startswith(STATE_PREFIX)}


@dataclass
class Result:
    """The transcript of one utterance; all times in seconds from the start of the stream.

    `start` and `end` span the recognised words; an empty result spans the utterance's audio
    taken so far. No time lies past the audio taken.
    """

    text: str
    words: list[Word]
    start: float
    end: float
    is_final: bool


@dataclass
class _Utterance:
    """Decoding state of the current utterance (reset at each endpoint)."""

    origin: int  # stream samples before it (model rate)
    state: dict[str, np.ndarray]  # ONNX state inputs
    endpoint: EndpointDetector  # also counts the utterance's output frames
    fed: int = 0  # real (not padding) samples passed to the model
    log_probs: list[np.ndarray] = field(default_factory=list)  # `[t, V]` per chunk
    tokens: list[tuple[int, int]] = field(default_factory=list)  # greedy (token, frame)
    last_best: int = -1  # argmax of the last frame, to collapse repeats across chunks


class StreamingModel:
    """A loaded streaming ONNX model (and optional LM) shared by any number of `Stream`s.

    Thread-safe: streams in different threads run the one onnxruntime session at the same time
    (its `run` is thread-safe) and take turns on the beam search (flashlight's decoder is not
    thread-safe). The exported graph takes one stream per run (batch 1), so streams are not
    batched into one ONNX call.
    """

    def __init__(self, model: str | Path = STREAMING_MODEL,
                 endpoint: EndpointConfig = DEFAULT_ENDPOINT, threads: int = THREADS,
                 chunk_samples: int | None = None,
                 lm: str | Path | None = LANGUAGE_MODEL,
                 decoding: Decoding = DEFAULT_DECODING) -> None:
        """`chunk_samples`: model-rate samples per ONNX run, a multiple of the hop (default:
        the model's recommended chunk). `lm`: a KenLM file for final results (see
        `asr.beam.BeamSearchDecoder` for it and `decoding`, the beam search's settings); None:
        greedy finals."""
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no streaming model there; make one from a model trained with "
                "`asr train --unidirectional` by `asr export CHECKPOINT --out DIR` and pass "
                "DIR/model.onnx")
        self._session = onnx_session(path, threads)
        meta = self._session.get_modelmeta().custom_metadata_map
        if meta.get("model_type") != MODEL_TYPE:
            raise ValueError(f"{path}: not a streaming model made by `asr export`")
        self.vocab = Vocabulary(tuple(json.loads(meta["vocabulary"])))
        self.blank_id = int(meta["blank_id"])
        self.frame_seconds = float(meta["frame_seconds"])
        self.sample_rate = int(meta["sample_rate"])
        hop = int(meta["hop_samples"])
        self.step_samples = hop * int(json.loads(meta["model_dims"])["stack"])
        self.lookahead_samples = int(meta.get("lookahead_samples", 0))
        self.chunk_samples = (int(meta["recommended_chunk_samples"]) if chunk_samples is None
                              else chunk_samples)
        if self.chunk_samples <= 0 or self.chunk_samples % hop:
            raise ValueError(f"chunk_samples must be a positive multiple of {hop}, "
                             f"not {self.chunk_samples}")
        self.endpoint = endpoint
        self._beam = None
        if lm is not None:
            from asr.beam import BeamSearchDecoder

            self._beam = BeamSearchDecoder(self.vocab, lm, **asdict(decoding))
        self._beam_lock = threading.Lock()
        self.zero_state = zero_state(self._session)
        self._outputs = ["log_probs", *(NEXT_STATE_PREFIX + name[len(STATE_PREFIX):]
                                        for name in self.zero_state)]

    def stream(self) -> Stream:
        """A new stream on this model."""
        return Stream(self)

    def run(self, chunk: np.ndarray, state: dict[str, np.ndarray],
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One ONNX step: `[T, V]` log-probs of a chunk `[n]` of audio, and the next state."""
        log_probs, *next_state = self._session.run(self._outputs, {"audio": chunk[None], **state})
        return log_probs[0], dict(zip(state, next_state, strict=True))

    def beam_decode(self, log_probs: np.ndarray, offset: float) -> Transcript | None:
        """The LM beam search of `[T, V]` log-probs (None without an LM), one at a time."""
        if self._beam is None:
            return None
        with self._beam_lock:
            return self._beam.decode(log_probs, self.frame_seconds, offset)


class Stream:
    """CTC recognition of one audio stream on a `StreamingModel`, one utterance at a time.

    Feed audio with `accept_waveform`; poll `partial_result` and `is_endpoint`; call
    `final_result` at each endpoint (and at the end of the stream) to get the utterance's
    transcript and start the next one. Or feed it with `accept`, which ends the utterance at
    every endpoint inside the buffer and returns those final results. Partial results are
    greedy; with the model's LM the final result is a beam search of the whole utterance's
    log-probabilities with that word n-gram.

    Not thread-safe: a call while another thread's call runs raises `RuntimeError` (and
    changes nothing). Streams of one model may run in different threads.
    """

    def __init__(self, model: StreamingModel) -> None:
        self.model = model
        self.sample_rate = model.sample_rate
        self.chunk_samples = model.chunk_samples
        self._lock = threading.RLock()
        self.reset()

    @_one_thread
    def reset(self) -> None:
        """Forget everything, the stream clock included."""
        self._input_rate: float | None = None
        self._resampler: soxr.ResampleStream | None = None
        self._buffer = np.zeros(0, dtype=np.float32)  # model-rate samples short of a chunk
        self._utterance = self._new_utterance(origin=0)

    @_one_thread
    def accept_waveform(self, samples: np.ndarray, sample_rate: int) -> None:
        """Take the next buffer of the stream: float samples in [-1, 1] or int16, mono `[n]`
        or `[n, channels]` (averaged), at any rate (resampled to the model's). Endpoints are
        seen between calls, so keep buffers short (say 100 ms) to end utterances on time.

        Raises `ValueError` (taking nothing) for float samples peaking above
        `asr.audio.FLOAT_PEAK_LIMIT`: int16-range values as floats must be divided by 32768
        first."""
        self._take(samples, sample_rate)

    def _take(self, samples: np.ndarray, sample_rate: int,
              finals: list[Result] | None = None) -> None:
        """`accept_waveform`; with `finals`, end the utterance at each endpoint and collect
        its final result there."""
        sample_rate = check_sample_rate(sample_rate)
        audio = mono_float32(samples)
        if sample_rate != self._input_rate:
            self._flush_resampler()
            self._input_rate = sample_rate
            if sample_rate != self.sample_rate:
                self._resampler = soxr.ResampleStream(sample_rate, self.sample_rate, 1,
                                                      dtype="float32", quality=RESAMPLE_QUALITY)
        if self._resampler is not None:
            audio = self._resampler.resample_chunk(audio)
        self._push(audio, finals)

    @_one_thread
    def partial_result(self) -> Result:
        """The current utterance's greedy transcript so far."""
        return self._result(is_final=False)

    @_one_thread
    def is_endpoint(self) -> bool:
        """Whether the current utterance has ended (see `EndpointConfig`)."""
        return self._utterance.endpoint.is_endpoint

    @_one_thread
    def final_result(self) -> Result:
        """Finish the current utterance: decode the buffered audio, zero-padded to a whole LSTM
        step, return its transcript and start a new utterance (the stream clock goes on)."""
        self._flush_resampler()
        result = self._finish(self._buffer)
        self._buffer = np.zeros(0, dtype=np.float32)
        return result

    @_one_thread
    def accept(self, samples: np.ndarray, sample_rate: int) -> list[Result]:
        """`accept_waveform`, ending the utterance at every endpoint reached within the buffer
        (checked after each model chunk, not only at the buffer's end); their final results.
        How the audio is cut into buffers then changes nothing."""
        finals: list[Result] = []
        self._take(samples, sample_rate, finals)
        return finals

    @_one_thread
    def transcribe_file(self, path: str | Path) -> list[Result]:
        """Stream a whole file as a new stream in `chunk_samples` buffers, read from disk a
        block at a time; the non-empty final results of its utterances. `AudioError` when it
        cannot be read; `AudioWarning` when it holds less than its header says."""
        stream = AudioStream(path, self.sample_rate)
        results = self.transcribe_recording(stream)
        stream.check()
        return results

    @_one_thread
    def transcribe_recording(self, audio: np.ndarray | Iterable[np.ndarray]) -> list[Result]:
        """`transcribe_file` for samples at the model's rate: an array, or mono float32 blocks
        of any size as they come (an `asr.audio.AudioStream`). Audio shorter than
        `MIN_SECONDS` in all gives no results."""
        self.reset()
        blocks = [mono_float32(audio)] if isinstance(audio, np.ndarray) else audio
        results, total = [], 0
        for block in blocks:
            results.extend(self.accept(block, self.sample_rate))
            total += len(block)
        results.append(self.final_result())
        if total < MIN_SECONDS * self.sample_rate:
            return []
        return [result for result in results if result.text]

    @_one_thread
    def transcribe(self, audio: np.ndarray) -> Transcript:
        """A whole recording at the model's rate as one transcript (the offline interface)."""
        words = [w for result in self.transcribe_recording(audio) for w in result.words]
        return Transcript(" ".join(w.word for w in words), words)

    def transcribe_files(self, paths: Iterable[str],
                         on_file: Callable[[FileResult | FileError], None] | None = None,
                         ) -> Iterator[FileResult | FileError]:
        """Files through the streaming path, in `asr.transcribe.Recognizer`'s shape."""
        return transcribe_files(lambda batch: [self.transcribe(a) for a in batch], paths,
                                on_file=on_file)

    def _new_utterance(self, origin: int) -> _Utterance:
        model = self.model
        detector = EndpointDetector(model.endpoint, model.frame_seconds, model.blank_id)
        return _Utterance(origin, dict(model.zero_state), detector)

    def _finish(self, buffered: np.ndarray) -> Result:
        """End the current utterance after `buffered` model-rate samples (decoded into it,
        zero-padded to a whole LSTM step and the model's look-ahead) and start the next; its
        final result."""
        utterance, real, model = self._utterance, len(buffered), self.model
        padding = -(utterance.fed + real) % model.step_samples + model.lookahead_samples
        if real + padding and utterance.fed + real:
            self._decode(np.pad(buffered, (0, padding)), real)
        result = self._result(is_final=True)
        self._utterance = self._new_utterance(utterance.origin + utterance.fed)
        return result

    def _flush_resampler(self) -> None:
        """Push out the resampler's delayed samples and drop it: at a rate change, or when the
        utterance ends (the next one starts afresh, like the model's state)."""
        if self._resampler is not None:
            self._push(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        self._resampler, self._input_rate = None, None

    def _push(self, audio: np.ndarray, finals: list[Result] | None = None) -> None:
        """Buffer model-rate samples and decode every whole chunk; an utterance of nothing but
        silence for `silence_timeout` is dropped. With `finals`, an utterance that reaches an
        endpoint is ended there and its final result appended."""
        buffer = np.concatenate([self._buffer, audio])
        whole = len(buffer) - len(buffer) % self.chunk_samples
        for start in range(0, whole, self.chunk_samples):
            self._decode(buffer[start : start + self.chunk_samples], self.chunk_samples)
            utterance = self._utterance
            if utterance.endpoint.is_silence_timeout:
                self._utterance = self._new_utterance(utterance.origin + utterance.fed)
            elif finals is not None and utterance.endpoint.is_endpoint:
                finals.append(self._finish(np.zeros(0, dtype=np.float32)))
        self._buffer = buffer[whole:].copy()

    def _decode(self, chunk: np.ndarray, real: int) -> None:
        """Run the model on one chunk (`real` of its samples are audio, the rest padding) and
        extend the utterance's log-probs, greedy tokens and endpoint counts."""
        utterance = self._utterance
        frames, utterance.state = self.model.run(chunk, utterance.state)
        utterance.fed += real
        if not len(frames):
            return
        tokens = greedy_tokens(frames, self.model.blank_id)
        if tokens and tokens[0] == (utterance.last_best, 0):  # a repeat across chunks
            tokens = tokens[1:]
        offset = utterance.endpoint.frames
        utterance.tokens.extend((token, offset + frame) for token, frame in tokens)
        best = frames.argmax(axis=-1)
        utterance.last_best = int(best[-1])
        utterance.endpoint.update(best)
        utterance.log_probs.append(frames)

    def _result(self, is_final: bool) -> Result:
        utterance, model = self._utterance, self.model
        offset = utterance.origin / self.sample_rate
        audio_end = round(offset + utterance.fed / self.sample_rate, 3)
        log_probs = np.concatenate(utterance.log_probs) if utterance.log_probs else None
        transcript = None
        if is_final and log_probs is not None:
            transcript = model.beam_decode(log_probs, offset)
        if transcript is None:  # greedy: words, times and confidences of the best path
            transcript = words_from_tokens(utterance.tokens, model.vocab, model.frame_seconds,
                                           offset, log_probs)
        # The last step of a final result may reach into the zero padding.
        words = [replace(w, end=min(w.end, audio_end)) for w in transcript.words]
        start, end = (words[0].start, words[-1].end) if words else (round(offset, 3), audio_end)
        return Result(transcript.text, words, start, end, is_final)


class StreamingRecognizer(Stream):
    """A `StreamingModel` with its one `Stream`: the simple interface for a single stream (see
    `Stream`). For many streams, load one `StreamingModel` and call its `stream()` per stream.

    Not thread-safe: one recognizer per stream; a call while another thread's call runs raises
    `RuntimeError` (and changes nothing).
    """

    def __init__(self, model: str | Path = STREAMING_MODEL,
                 endpoint: EndpointConfig = DEFAULT_ENDPOINT, threads: int = THREADS,
                 chunk_samples: int | None = None,
                 lm: str | Path | None = LANGUAGE_MODEL,
                 decoding: Decoding = DEFAULT_DECODING) -> None:
        """The arguments of `StreamingModel`."""
        super().__init__(StreamingModel(model, endpoint, threads, chunk_samples, lm, decoding))
