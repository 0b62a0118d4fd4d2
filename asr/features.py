"""Log-mel frontend in torch: 25 ms Hann window, 10 ms hop, 80 Slaney mel bins at 16 kHz.

Frames are causal: frame `i` covers samples `[(i + 1) * hop - n_fft, (i + 1) * hop)`, the
stream being preceded by `n_fft - hop` zeros. So `n` samples (a multiple of the hop) give
exactly `n / hop` frames, and a streaming loop that carries the last `n_fft - hop` samples
computes the very same frames as one pass over the whole recording.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr.audio import SAMPLE_RATE


@dataclass(frozen=True)
class FeatureConfig:
    """Settings of the log-mel frontend; stored in checkpoints and ONNX metadata."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 400  # 25 ms window
    hop_length: int = 160  # 10 ms hop
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = SAMPLE_RATE / 2
    log_floor: float = 1e-6

    @property
    def context_samples(self) -> int:
        """Samples of the previous audio that the next frame's window still covers."""
        return self.n_fft - self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    logstep = math.log(6.4) / 27.0
    mel = hz / f_sp
    log_region = hz >= min_log_hz
    mel[log_region] = min_log_hz / f_sp + np.log(hz[log_region] / min_log_hz) / logstep
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    hz = f_sp * mel
    log_region = mel >= min_log_mel
    hz[log_region] = min_log_hz * np.exp(logstep * (mel[log_region] - min_log_mel))
    return hz


def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """Slaney-normalised triangular filters, `[n_mels, n_fft // 2 + 1]` (as librosa.filters.mel)."""
    fft_freqs = np.linspace(0, config.sample_rate / 2, config.n_fft // 2 + 1)
    mel_points = np.linspace(_hz_to_mel(np.array([config.f_min]))[0],
                             _hz_to_mel(np.array([config.f_max]))[0], config.n_mels + 2)
    hz_points = _mel_to_hz(mel_points)
    widths = np.diff(hz_points)
    ramps = hz_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]
    return weights.astype(np.float32)


def dft_kernels(config: FeatureConfig) -> np.ndarray:
    """Hann-windowed real and imaginary DFT rows as conv1d weights, `[2 * bins, 1, n_fft]`."""
    n = np.arange(config.n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / config.n_fft)  # periodic Hann
    k = np.arange(config.n_fft // 2 + 1)[:, None]
    phase = 2 * np.pi * k * n[None, :] / config.n_fft
    kernels = np.concatenate([np.cos(phase) * window, -np.sin(phase) * window])
    return kernels[:, None, :].astype(np.float32)


class LogMel(nn.Module):
    """Log-mel frames of audio that already carries its `context_samples` of left context.

    Input `[batch, context_samples + n]` with `n` a multiple of the hop; output
    `[batch, n / hop, n_mels]`. Built from conv1d and matmul only, so it exports to ONNX.
    """

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("dft", torch.from_numpy(dft_kernels(config)), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(config)), persistent=False)

    def forward(self, audio: Tensor) -> Tensor:
        spectrum = F.conv1d(audio.unsqueeze(1), self.dft, stride=self.config.hop_length)
        real, imag = spectrum.chunk(2, dim=1)
        mel = torch.matmul(self.mel, real * real + imag * imag)
        return torch.log(mel.clamp_min(self.config.log_floor)).transpose(1, 2)


def pad_for_frames(audio: Tensor, config: FeatureConfig, multiple: int = 1) -> Tensor:
    """Prepend the zero context and append zeros up to a whole number of `multiple` hops."""
    step = config.hop_length * multiple
    tail = (-audio.shape[-1]) % step
    return F.pad(audio, (config.context_samples, tail))


def num_frames(num_samples: int, config: FeatureConfig, multiple: int = 1) -> int:
    """Frames `pad_for_frames` + `LogMel` produce for `num_samples` samples."""
    step = config.hop_length * multiple
    return math.ceil(num_samples / step) * multiple


def log_mel(audio: Tensor | np.ndarray, config: FeatureConfig | None = None) -> Tensor:
    """Log-mel frames `[T, n_mels]` of one mono recording (float samples in [-1, 1])."""
    config = config or FeatureConfig()
    samples = torch.as_tensor(audio, dtype=torch.float32).reshape(1, -1)
    return LogMel(config)(pad_for_frames(samples, config))[0]
