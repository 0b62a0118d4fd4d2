"""Audio input: files in any format libsndfile (or ffmpeg) reads, at any rate and channel count,
read a block at a time (`AudioStream`, memory bounded whatever the length) or whole
(`load_audio`); and the checks on the arrays and sample rates given to the Python API."""

from __future__ import annotations

import math
import numbers
import os
import shutil
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000
INT16_SCALE = 32768.0
RESAMPLE_QUALITY = "HQ"
# Float samples beyond this peak are not [-1, 1] audio (e.g. unscaled int16 values as floats);
# a little over 1 is tolerated (resampling overshoot, hot recordings).
FLOAT_PEAK_LIMIT = 2.0
MIN_SECONDS = 0.1  # shorter audio holds no word: recognisers give it an empty transcript
FILE_RATES = (4000, 768000)  # sample rates (Hz) a file may have; others are refused
BLOCK_SAMPLES = 8192  # samples (all channels together) read from a file at a time
MAX_LOAD_SECONDS = 4 * 3600.0  # the longest file `load_audio` returns whole (0.9 GB at 16 kHz)
_SNDFILE_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError)
_WAV_SAMPLE_CODECS = (1, 3, 6, 7, 0xFFFE)  # PCM, float, A-law, mu-law, extensible


class AudioError(ValueError):
    """A file that cannot be turned into audio samples."""


class AudioWarning(UserWarning):
    """A file read despite a problem, such as a header promising more audio than it holds."""


def resample(samples: np.ndarray, orig_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample mono float32 samples with a high-quality polyphase filter (soxr)."""
    if orig_rate == target_rate:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, orig_rate, target_rate, quality=RESAMPLE_QUALITY
                         ).astype(np.float32)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a `[n, channels]` array (a 1-D array passes through)."""
    return samples if samples.ndim == 1 else samples.mean(axis=1)


def check_sample_rate(rate: object) -> int:
    """`rate` as an int of Hz: `TypeError` unless it is a number, `ValueError` unless it is
    whole, finite and positive."""
    expected = "sample_rate must be a positive whole number of Hz"
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f"{expected}, not {rate!r} ({type(rate).__name__})")
    if not (math.isfinite(rate) and rate > 0 and rate == int(rate)):
        raise ValueError(f"{expected}, not {rate!r}")
    return int(rate)


def mono_float32(samples: np.ndarray) -> np.ndarray:
    """Validated float32 mono samples of a float (in [-1, 1]) or int16 `[n]` or
    `[n, channels]` array; `ValueError` for empty, misshapen or non-finite audio."""
    if isinstance(samples, str | os.PathLike):
        raise TypeError(f"samples must be an array, not a file name ({samples}): read the file "
                        "with asr.audio.load_audio (or use transcribe_files / transcribe_file)")
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        audio = samples.astype(np.float32) / INT16_SCALE
    elif np.issubdtype(samples.dtype, np.floating):
        audio = samples.astype(np.float32, copy=False)
    else:
        raise TypeError(f"samples must be float (in [-1, 1]) or int16, not {samples.dtype}")
    if audio.ndim not in (1, 2):
        raise ValueError(f"samples must be [n] or [n, channels], not of shape {audio.shape}")
    if audio.size == 0:
        raise ValueError(f"empty audio: samples of shape {audio.shape}")
    if audio.ndim == 2 and audio.shape[0] < audio.shape[1]:
        raise ValueError(f"samples of shape {audio.shape} look like [channels, n]; "
                         "pass [n] or [n, channels]")
    audio = np.ascontiguousarray(to_mono(audio), dtype=np.float32)
    if not np.all(np.isfinite(audio)):
        raise ValueError("samples contain NaN or infinite values")
    if (peak := _too_hot(audio)) is not None:
        raise ValueError(f"float samples must lie in [-1, 1], these reach {peak:g}; divide "
                         f"int16-range values by {INT16_SCALE:g} (or pass them as int16)")
    return audio


def _too_hot(samples: np.ndarray) -> float | None:
    """The peak of `samples` when it is above `FLOAT_PEAK_LIMIT`, else None."""
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    return peak if peak > FLOAT_PEAK_LIMIT else None


def _check_path(path: Path) -> None:
    """`AudioError` unless `path` is a readable, non-empty regular file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except OSError as error:
        raise AudioError(f"{path}: {error.strerror or error}") from None
    if stat.S_ISDIR(info.st_mode):
        raise AudioError(f"{path}: is a directory")
    if not stat.S_ISREG(info.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(info.st_mode) else "a socket"
                if stat.S_ISSOCK(info.st_mode) else "a device")
        raise AudioError(f"{path}: not a regular file ({kind})")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: permission denied")
    if info.st_size == 0:
        raise AudioError(f"{path}: the file is empty")


def _wav_header_frames(path: Path) -> int | None:
    """Frames the data chunk of a RIFF/WAVE header claims. libsndfile trims a claim longer
    than the file to what it holds, so a truncated WAV shows only here. None for other
    formats, for codecs whose frames are not a fixed number of bytes, and for unknown sizes
    (0 or 0xFFFFFFFF, as streaming writers leave them)."""
    with path.open("rb") as file:
        head = file.read(12)
        if head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return None
        block_align = 0
        while len(chunk := file.read(8)) == 8:
            name, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"data":
                unknown = size in (0, 0xFFFFFFFF) or not block_align
                return None if unknown else size // block_align
            skip = size + size % 2
            if name == b"fmt ":
                body = file.read(min(size, 16))
                if int.from_bytes(body[:2], "little") in _WAV_SAMPLE_CODECS:
                    block_align = int.from_bytes(body[12:14], "little")  # bytes a frame
                skip -= len(body)
            file.seek(skip, os.SEEK_CUR)
    return None


class AudioStream:
    """A file's audio as float32 mono blocks at `sample_rate`, read from disk a block at a
    time, so memory stays bounded whatever the file's length.

    Making one checks the path and the header (`AudioError`: missing, a directory, not a
    regular file, empty, not audio, an implausible sample rate). Iterating reads the file
    afresh; a reading error then ends the blocks instead of raising, so that a caller
    streaming many files can report it and go on. Afterwards `samples` counts the samples
    given, `error` says why reading failed (None if it did not) and `warnings` what was wrong
    but read anyway (a file holding less than its header says); `check()` raises and warns
    them instead.
    """

    def __init__(self, path: str | Path, sample_rate: int = SAMPLE_RATE) -> None:
        self.path = Path(path)
        # as bytes: soundfile encodes a str name strictly, failing on names that aren't UTF-8
        self._name = os.fsencode(self.path)
        self.sample_rate = check_sample_rate(sample_rate)
        _check_path(self.path)
        self.samples, self.error, self.warnings = 0, None, []
        self.file_rate: int | None = None  # None: read by ffmpeg, length unknown beforehand
        self.header_frames = 0
        try:
            info = sf.info(self._name)
        except _SNDFILE_ERRORS as error:
            if shutil.which("ffmpeg") is None:
                raise AudioError(f"{self.path}: not a readable audio file ({error})") from None
            return
        low, high = FILE_RATES
        if not low <= info.samplerate <= high:
            raise AudioError(f"{self.path}: the header's sample rate of {info.samplerate} Hz is "
                             f"not audio (expected {low} to {high} Hz)")
        self.file_rate, self._channels = info.samplerate, info.channels
        self.header_frames = max(info.frames, _wav_header_frames(self.path) or 0)

    @property
    def seconds(self) -> float:
        """Seconds of audio given so far."""
        return self.samples / self.sample_rate

    @property
    def header_seconds(self) -> float | None:
        """The length the header claims (None when read by ffmpeg)."""
        return self.header_frames / self.file_rate if self.file_rate else None

    def __iter__(self) -> Iterator[np.ndarray]:
        self.samples, self.error, self.warnings = 0, None, []
        try:
            for block in self._read_sndfile() if self.file_rate else self._read_ffmpeg():
                if not np.all(np.isfinite(block)):
                    raise AudioError(f"{self.path}: contains NaN or infinite samples")
                if (peak := _too_hot(block)) is not None:
                    raise AudioError(f"{self.path}: float samples reach {peak:g}, far outside "
                                     "[-1, 1] (unscaled integer PCM stored as float?)")
                if len(block):
                    self.samples += len(block)
                    yield block
        except AudioError as error:
            self.error = str(error)
            return
        if not self.samples:
            self.error = f"{self.path}: contains no audio samples"

    def check(self) -> None:
        """Raise the reading error as `AudioError`, else issue the warnings as `AudioWarning`."""
        if self.error:
            raise AudioError(self.error)
        for message in self.warnings:
            warnings.warn(message, AudioWarning, stacklevel=3)

    def _read_sndfile(self) -> Iterator[np.ndarray]:
        """Blocks through libsndfile; a file that breaks off (truncated, or a header claiming
        more) is read up to where it does, warned about, and taken as ending there."""
        resampler = (None if self.file_rate == self.sample_rate else
                     soxr.ResampleStream(self.file_rate, self.sample_rate, 1, dtype="float32",
                                         quality=RESAMPLE_QUALITY))
        frames = 0
        for block in self._sndfile_blocks():
            frames += len(block)
            mono = to_mono(block)
            yield mono if resampler is None else resampler.resample_chunk(mono)
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        if frames < self.header_frames:
            self.warnings.append(f"{self.path}: header says {self.header_seconds:.1f} s, file "
                                 f"holds {frames / self.file_rate:.1f} s (truncated?); "
                                 "used what is there")

    def _sndfile_blocks(self) -> Iterator[np.ndarray]:
        """`[n, channels]` float32 blocks of the file. libsndfile drops a whole read that runs
        into a break in the file, so after an error the file is reopened where it was and read
        in ever smaller pieces, up to the break. An error before any audio is an `AudioError`."""
        frames, size = 0, max(1, BLOCK_SAMPLES // self._channels)
        while size:
            try:
                with sf.SoundFile(self._name) as file:
                    file.seek(frames)
                    while len(block := file.read(size, dtype="float32", always_2d=True)):
                        frames += len(block)
                        yield block
                    return
            except _SNDFILE_ERRORS as error:
                if not frames:
                    raise AudioError(f"{self.path}: not a readable audio file ({error})"
                                     ) from None
                size //= 2

    def _read_ffmpeg(self) -> Iterator[np.ndarray]:
        """Blocks of ffmpeg's float output, for formats libsndfile does not read."""
        command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(self.path), "-f", "f32le",
                   "-ac", "1", "-ar", str(self.sample_rate), "-"]
        with tempfile.TemporaryFile() as log, subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log) as ffmpeg:
            try:
                while data := ffmpeg.stdout.read(BLOCK_SAMPLES * 4):
                    yield np.frombuffer(data[: len(data) // 4 * 4], np.float32).copy()
            except GeneratorExit:  # the blocks were abandoned
                ffmpeg.kill()
                raise
            if ffmpeg.wait():
                log.seek(0)
                message = os.fsdecode(log.read()).strip()  # it may quote a non-UTF-8 name
                raise AudioError(f"{self.path}: ffmpeg could not decode it: {message}")


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a whole audio file as float32 mono samples in [-1, 1] at `sample_rate`.

    Raises `AudioError` with the reason when the file is missing, not a regular file, empty,
    not audio, or longer than `MAX_LOAD_SECONDS` (by its header or in fact; stream longer
    files with `AudioStream`). A file holding less than its header says gives what it holds
    with an `AudioWarning`.
    """
    stream = AudioStream(path, sample_rate)
    too_long = (f"{stream.path}: longer than the {MAX_LOAD_SECONDS / 3600:g} h that load_audio "
                "reads whole; stream it with asr.audio.AudioStream")
    if (stream.header_seconds or 0) > MAX_LOAD_SECONDS:
        raise AudioError(too_long)
    blocks = []
    for block in stream:
        blocks.append(block)
        if stream.seconds > MAX_LOAD_SECONDS:
            raise AudioError(too_long)
    stream.check()
    return np.concatenate(blocks)
