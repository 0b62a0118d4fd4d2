"""Audio loading: any format libsndfile (or ffmpeg) reads, any rate, any channel count."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """A file that cannot be turned into audio samples."""


def resample(samples: np.ndarray, orig_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample mono float32 samples with a high-quality polyphase filter (soxr)."""
    if orig_rate == target_rate:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, orig_rate, target_rate, quality="HQ").astype(np.float32)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a `[n, channels]` array (a 1-D array passes through)."""
    return samples if samples.ndim == 1 else samples.mean(axis=1)


def _read_ffmpeg(path: Path, sample_rate: int) -> np.ndarray:
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path),
           "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "-"]
    result = subprocess.run(cmd, capture_output=True, check=False)
    if result.returncode != 0:
        message = os.fsdecode(result.stderr).strip()  # it may quote a name that isn't UTF-8
        raise AudioError(f"{path}: ffmpeg could not decode it: {message}")
    return np.frombuffer(result.stdout, dtype=np.float32).copy()


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as float32 mono samples in [-1, 1] at `sample_rate`.

    Raises `AudioError` with the reason when the file is missing, empty or not audio.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: the file is empty")
    try:
        # as bytes: soundfile encodes a str name strictly, failing on names that aren't UTF-8
        data, rate = sf.read(os.fsencode(path), dtype="float32", always_2d=True)
        samples = resample(to_mono(data), rate, sample_rate)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        if shutil.which("ffmpeg") is None:
            raise AudioError(f"{path}: not a readable audio file ({error})") from error
        samples = _read_ffmpeg(path, sample_rate)
    if samples.size == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return samples
