"""Training-time augmentation: speed perturbation, random leading and trailing silence, noise
mixing, faint noise under everything, SpecAugment."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from asr.audio import SAMPLE_RATE, load_audio, resample

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
NOISE_SLOPES = (0.0, 1.0, 2.0)  # white, pink or brown noise
FLOOR_NOISE_DBFS = (-90.0, -50.0)  # microphone self-noise to dither: digital silence is rare


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations training applies; all off by default."""

    speeds: tuple[float, ...] = ()  # e.g. (0.9, 1.0, 1.1)
    noise_prob: float = 0.0  # chance an utterance gets noise
    snr_db: tuple[float, float] = (5.0, 30.0)
    noise_dir: str | None = None  # recordings of noise; coloured synthetic noise when None
    freq_masks: int = 0  # SpecAugment masks per utterance
    freq_width: int = 15  # mel bins
    time_masks: int = 0
    time_width: float = 0.05  # the most of an utterance one time mask covers
    lead_silence: float = 0.0  # up to this many seconds of silence before the speech
    trail_silence: float = 0.0  # and after it; a random start makes the model shift-invariant
    floor_noise_prob: float = 0.0  # chance of faint noise (FLOOR_NOISE_DBFS) under everything


def speed_perturb(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (tempo and pitch together, as Kaldi's speed perturbation)."""
    return resample(audio, round(SAMPLE_RATE * factor), SAMPLE_RATE)


def coloured_noise(length: int, slope: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with power falling as 1/f**slope (0 white, 1 pink, 2 brown)."""
    # shaped at a power-of-two length and cut: an FFT of a length with a large prime factor
    # is many times slower, and it made this the slowest step of a data-loading worker
    if length < 2:
        return np.zeros(length, np.float32)
    n = 1 << (length - 1).bit_length()
    noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * _spectral_shape(n, slope),
                         n=n)[:length]
    noise -= noise.mean()  # the cut part of a pink or brown noise drifts
    return (noise / (np.std(noise) + 1e-9)).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _spectral_shape(n: int, slope: float) -> np.ndarray:
    """Amplitude gains 1/f**(slope/2) of an n-point rfft, 0 at DC (no offset: the 1/f boost
    would make it dominate)."""
    gains = np.maximum(np.fft.rfftfreq(n), 1.0 / n) ** (-slope / 2)
    gains[0] = 0.0
    return gains


def mix_at_snr(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add `noise` (looped or cut to length) at the given signal-to-noise ratio."""
    noise = np.resize(noise, audio.shape)
    signal_power = float(np.mean(audio**2)) + 1e-10
    noise_power = float(np.mean(noise**2)) + 1e-10
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    mixed = audio + scale * noise
    peak = np.abs(mixed).max()
    return (mixed / peak * 0.99 if peak > 1 else mixed).astype(np.float32)


class WaveformAugmenter:
    """Applies the waveform augmentations to one utterance, from a given random generator."""

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config
        self.noise_files = (sorted(p for p in Path(config.noise_dir).rglob("*")
                                   if p.suffix.lower() in AUDIO_SUFFIXES)
                            if config.noise_dir else [])
        if config.noise_dir and not self.noise_files:
            raise FileNotFoundError(f"no audio files under noise folder {config.noise_dir}")

    def __call__(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.config.speeds:
            factor = float(rng.choice(self.config.speeds))
            if factor != 1.0:
                audio = speed_perturb(audio, factor)
        if self.config.lead_silence or self.config.trail_silence:
            lead = round(rng.uniform(0, self.config.lead_silence) * SAMPLE_RATE)
            trail = round(rng.uniform(0, self.config.trail_silence) * SAMPLE_RATE)
            audio = np.pad(audio, (lead, trail))
        if rng.random() < self.config.noise_prob:
            noise = (load_audio(self.noise_files[rng.integers(len(self.noise_files))])
                     if self.noise_files
                     else coloured_noise(len(audio), rng.choice(NOISE_SLOPES), rng))
            audio = mix_at_snr(audio, noise, rng.uniform(*self.config.snr_db))
        if rng.random() < self.config.floor_noise_prob:
            level = 10 ** (rng.uniform(*FLOOR_NOISE_DBFS) / 20)
            noise = coloured_noise(len(audio), rng.choice(NOISE_SLOPES), rng)
            audio = (audio + level * noise).astype(np.float32)
        return audio


def spec_augment(frames: Tensor, lengths: Tensor, config: AugmentConfig, fill: Tensor,
                 generator: torch.Generator) -> Tensor:
    """Mask random mel bands and time spans of `[B, T, F]` frames with `fill` (the mean)."""
    frames = frames.clone()
    batch, _, n_mels = frames.shape
    for b in range(batch):
        for _ in range(config.freq_masks):
            width = int(torch.randint(0, config.freq_width + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, n_mels - width), (1,), generator=generator))
            frames[b, :, start:start + width] = fill[start:start + width]
        length = int(lengths[b])
        for _ in range(config.time_masks):
            width = int(torch.randint(0, int(length * config.time_width) + 1, (1,),
                                      generator=generator))
            start = int(torch.randint(0, max(1, length - width), (1,), generator=generator))
            frames[b, start:start + width] = fill
    return frames
