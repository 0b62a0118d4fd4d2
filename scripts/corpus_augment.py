"""Signal perturbations and augmentations for scripts/make_corpus.py, as small pure functions.

Every function takes float32 mono samples at SAMPLE_RATE (and, where it needs randomness, a
numpy Generator) and returns new float32 samples; nothing here touches files or global state.
Only numpy, soxr and soundfile are used (no torch), so the corpus builds where no sox binary exists.

AUGMENTATIONS is the table make_corpus draws from: each entry has a probability, a function
drawing its parameters from the item's plan generator, and the function applying them.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from asr.audio import SAMPLE_RATE
from asr.augment import coloured_noise

RT60_DECAY = np.log(1000.0)  # amplitude falls by 60 dB over RT60 seconds
WSOLA_FRAME = 512  # samples (32 ms) per overlap-add frame of the time stretch
WSOLA_TOLERANCE = 160  # samples a frame may move to line up with its neighbour (10 ms)
STFT_FRAME, STFT_HOP = 512, 128  # the frequency warp's analysis
VTLP_BOUNDARY_HZ = 4800.0  # frequencies above this are warped towards Nyquist linearly
TELEPHONE_BAND = (300.0, 3400.0)
TELEPHONE_RATE = 8000
BAND_EDGE_HZ = 100.0  # width of the raised-cosine edges of band_limit
DITHER_LSB = 1.0 / 32768  # one 16-bit step


# ------------------------------------------------------------------------ speaker perturbations


def _f32(audio: np.ndarray) -> np.ndarray:
    return np.asarray(audio, dtype=np.float32)


def resample_by(audio: np.ndarray, ratio: float) -> np.ndarray:
    """Resample to `ratio` times as many samples (soxr, any real ratio)."""
    return _f32(soxr.resample(audio, SAMPLE_RATE, SAMPLE_RATE * ratio, quality="HQ"))


def time_stretch(audio: np.ndarray, factor: float) -> np.ndarray:
    """WSOLA time stretch: `factor` times faster (length / factor samples), pitch unchanged."""
    if abs(factor - 1.0) < 1e-3 or audio.size < WSOLA_FRAME:
        return _f32(audio)
    frame, tol, hop = WSOLA_FRAME, WSOLA_TOLERANCE, WSOLA_FRAME // 2
    window = np.hanning(frame).astype(np.float32)
    length = int(round(audio.size / factor))
    padded = np.concatenate([np.zeros(tol, np.float32), _f32(audio),
                             np.zeros(frame + 2 * tol + int(hop * factor) + 1, np.float32)])
    out = np.zeros(length + frame, np.float32)
    norm = np.zeros(length + frame, np.float32)
    previous = tol  # where the last copied frame started in `padded`
    for k, start in enumerate(range(0, length, hop)):
        nominal = tol + int(round(k * hop * factor))
        if k == 0:
            position = nominal
        else:  # the frame that best continues the previous one, within +-tol of nominal
            target = padded[previous + hop:previous + hop + frame]
            region = padded[nominal - tol:nominal + tol + frame]
            score = np.correlate(region, target, mode="valid")
            position = nominal - tol + int(np.argmax(score))
        out[start:start + frame] += padded[position:position + frame] * window
        norm[start:start + frame] += window
        previous = position
    return _f32(out[:length] / np.maximum(norm[:length], 1e-3))


def change_tempo_and_pitch(audio: np.ndarray, tempo: float, semitones: float) -> np.ndarray:
    """`tempo` times faster and `semitones` higher, each independent of the other."""
    ratio = 2.0 ** (semitones / 12.0)
    shifted = resample_by(audio, 1.0 / ratio) if abs(semitones) > 1e-3 else _f32(audio)
    return time_stretch(shifted, tempo / ratio)


def _stft(audio: np.ndarray) -> np.ndarray:
    padded = np.concatenate([np.zeros(STFT_FRAME, np.float32), audio,
                             np.zeros(STFT_FRAME, np.float32)])
    count = 1 + (padded.size - STFT_FRAME) // STFT_HOP
    index = np.arange(STFT_FRAME)[None, :] + STFT_HOP * np.arange(count)[:, None]
    return np.fft.rfft(padded[index] * np.hanning(STFT_FRAME), axis=1)


def _istft(spectrum: np.ndarray, length: int) -> np.ndarray:
    frames = np.fft.irfft(spectrum, n=STFT_FRAME, axis=1)
    window = np.hanning(STFT_FRAME)
    size = STFT_HOP * (len(frames) - 1) + STFT_FRAME
    out, norm = np.zeros(size), np.zeros(size)
    for i, frame in enumerate(frames):
        out[i * STFT_HOP:i * STFT_HOP + STFT_FRAME] += frame * window
        norm[i * STFT_HOP:i * STFT_HOP + STFT_FRAME] += window**2
    out /= np.maximum(norm, 1e-8)
    return _f32(out[STFT_FRAME:STFT_FRAME + length])


def vtlp_source_bins(alpha: float, bins: int) -> np.ndarray:
    """For each output frequency bin, the (fractional) input bin it takes its magnitude from.

    The warp of Jaitly & Hinton (2013): f -> alpha f up to a boundary, then linear to Nyquist,
    so alpha > 1 moves formants up (a shorter vocal tract) and alpha < 1 down.
    """
    nyquist = bins - 1
    boundary = VTLP_BOUNDARY_HZ / (SAMPLE_RATE / 2) * nyquist * min(alpha, 1.0) / alpha
    source = np.arange(bins, dtype=np.float64)
    warped_boundary = boundary * alpha
    low = source <= warped_boundary
    high_slope = (nyquist - boundary) / (nyquist - warped_boundary)
    return np.where(low, source / alpha, boundary + (source - warped_boundary) * high_slope)


def vocal_tract_warp(audio: np.ndarray, alpha: float) -> np.ndarray:
    """Vocal-tract-length perturbation: warp the magnitude spectrum, keep phase and length."""
    if abs(alpha - 1.0) < 1e-3 or audio.size == 0:
        return _f32(audio)
    spectrum = _stft(_f32(audio))
    bins = spectrum.shape[1]
    source = vtlp_source_bins(alpha, bins)
    magnitude = np.abs(spectrum)
    lower = np.clip(np.floor(source).astype(int), 0, bins - 1)
    upper = np.clip(lower + 1, 0, bins - 1)
    fraction = source - lower
    warped = magnitude[:, lower] * (1 - fraction) + magnitude[:, upper] * fraction
    phase = np.exp(1j * np.angle(spectrum))
    out = _istft(warped * phase, audio.size)
    scale = np.sqrt(np.mean(audio**2) / (np.mean(out**2) + 1e-12))
    return _f32(out * scale)


# ------------------------------------------------------------------------ room and channel


def room_impulse_response(rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Exponentially decaying noise lasting `rt60` seconds after a unit direct path."""
    t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
    response = rng.standard_normal(t.size) * np.exp(-RT60_DECAY * t / rt60)
    response *= 0.3 / (np.sqrt(np.sum(response**2)) + 1e-9)  # reverberant energy < direct
    response[0] = 1.0
    return response


def reverberate(audio: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room response (FFT), keeping the length and the RMS level."""
    response = room_impulse_response(rt60, rng)
    size = audio.size + response.size - 1
    n = 1 << (size - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(audio, n) * np.fft.rfft(response, n), n)[:audio.size]
    return _f32(wet * np.sqrt(np.mean(audio**2) / (np.mean(wet**2) + 1e-12)))


def hum(length: int, mains_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS mains hum: a fundamental and odd harmonics with random phases."""
    t = np.arange(length) / SAMPLE_RATE
    wave = sum(np.sin(2 * np.pi * mains_hz * h * t + rng.uniform(0, 2 * np.pi)) / h
               for h in (1, 3, 5, 7))
    return _f32(wave / (np.std(wave) + 1e-9))


def add_noise(audio: np.ndarray, snr_db: float, slope: float,
              rng: np.random.Generator) -> np.ndarray:
    """Add coloured noise at `snr_db` relative to the speech (its loud frames, not pauses)."""
    power = float(np.mean(audio**2)) + 1e-10
    noise = coloured_noise(audio.size, slope, rng)
    return _f32(audio + noise * np.sqrt(power / 10 ** (snr_db / 10)))


def band_limit(audio: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """Keep `low_hz`..`high_hz` (raised-cosine edges BAND_EDGE_HZ wide), same length."""
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(audio.size, 1.0 / SAMPLE_RATE)

    def edge(f: np.ndarray) -> np.ndarray:  # 0 below -BAND_EDGE_HZ/2, 1 above +BAND_EDGE_HZ/2
        x = np.clip(f / BAND_EDGE_HZ + 0.5, 0.0, 1.0)
        return 0.5 - 0.5 * np.cos(np.pi * x)

    gain = edge(freqs - low_hz) * edge(high_hz - freqs)
    return _f32(np.fft.irfft(spectrum * gain, n=audio.size))


def rate_round_trip(audio: np.ndarray, rate: int) -> np.ndarray:
    """Down to `rate` Hz and back up (loses everything above rate/2), same length."""
    down = soxr.resample(audio, SAMPLE_RATE, rate, quality="HQ")
    up = _f32(soxr.resample(down, rate, SAMPLE_RATE, quality="HQ"))
    return np.pad(up, (0, max(0, audio.size - up.size)))[:audio.size]


def mu_law(audio: np.ndarray, bits: int = 8) -> np.ndarray:
    """G.711-style companding to `bits` bits and back."""
    mu = 2**bits - 1
    x = np.clip(audio, -1.0, 1.0)
    code = np.round((np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) + 1) / 2 * mu)
    y = code / mu * 2 - 1
    return _f32(np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu)


def telephone(audio: np.ndarray, companding: bool) -> np.ndarray:
    """A narrow-band phone line: 300-3400 Hz, 8 kHz sampling, optionally mu-law."""
    line = rate_round_trip(band_limit(audio, *TELEPHONE_BAND), TELEPHONE_RATE)
    if not companding:
        return line
    peak = max(float(np.abs(line).max()), 1e-6)
    return mu_law(line / peak) * peak


CODECS = {  # name -> (libsndfile format, subtype, compression range: about 30-12 kbit/s)
    "mp3": ("MP3", "MPEG_LAYER_III", (0.9, 0.99)),  # libsndfile refuses 1.0 for MP3
    "opus": ("OGG", "OPUS", (0.95, 1.0)),
}


def lossy_codec(audio: np.ndarray, codec: str, compression: float) -> np.ndarray:
    """Encode and decode in memory (libsndfile); `compression` 0..1, 1 the lowest bit rate."""
    fmt, subtype, _ = CODECS[codec]
    peak = max(float(np.abs(audio).max()), 1e-6)
    buffer = io.BytesIO()
    sf.write(buffer, audio / peak * 0.9, SAMPLE_RATE, format=fmt, subtype=subtype,
             compression_level=compression)
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    decoded = np.pad(decoded, (0, max(0, audio.size - decoded.size)))[:audio.size]
    return _f32(decoded * peak / 0.9)


def pad_silence(audio: np.ndarray, lead_s: float, trail_s: float,
                rng: np.random.Generator) -> np.ndarray:
    """Leading and trailing silence (dithered, not digital zero)."""
    def quiet(seconds: float) -> np.ndarray:
        return _f32(rng.standard_normal(int(seconds * SAMPLE_RATE)) * DITHER_LSB)

    return np.concatenate([quiet(lead_s), _f32(audio), quiet(trail_s)])


def set_level(audio: np.ndarray, peak_db: float) -> np.ndarray:
    """Scale to a peak of `peak_db` dBFS; above 0 dBFS the peaks are clipped."""
    peak = float(np.abs(audio).max()) + 1e-9
    return _f32(np.clip(audio * (10 ** (peak_db / 20) / peak), -1.0, 1.0))


# ------------------------------------------------------------------------ empty (no speech)


EMPTY_KINDS = ("silence", "room-tone", "noise", "hum")


def empty_audio(kind: str, seconds: float, level_db: float,
                rng: np.random.Generator) -> np.ndarray:
    """Audio with no speech in it: dithered digital silence, reverberant room tone, coloured
    noise or mains hum, at an RMS level of `level_db` dBFS (silence: dither only)."""
    length = int(seconds * SAMPLE_RATE)
    if kind == "silence":  # triangular dither of one 16-bit step
        return _f32((rng.random(length) - rng.random(length)) * DITHER_LSB)
    if kind == "room-tone":
        base = reverberate(coloured_noise(length, 2.0, rng), rng.uniform(0.2, 0.8), rng)
    elif kind == "noise":
        base = coloured_noise(length, float(rng.choice([0.0, 1.0, 2.0])), rng)
    elif kind == "hum":
        base = hum(length, float(rng.choice([50.0, 60.0])), rng)
        base += coloured_noise(length, 1.0, rng) * 0.1
    else:
        raise ValueError(f"unknown empty kind {kind!r}; expected one of {EMPTY_KINDS}")
    return _f32(base / (np.sqrt(np.mean(base**2)) + 1e-9) * 10 ** (level_db / 20))


# ------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Augmentation:
    """One step of the pipeline: applied with `probability`, parameters from `draw`."""

    name: str
    probability: float
    draw: Callable[[np.random.Generator], dict]  # the plan's generator -> keyword arguments
    apply: Callable[..., np.ndarray]  # (audio, rng, **parameters) -> audio
    on_empty: bool = False  # also applied to the speech-free items


def _r(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def _draw_codec(rng: np.random.Generator) -> dict:
    codec = str(rng.choice(list(CODECS)))
    return {"codec": codec, "compression": _r(rng.uniform(*CODECS[codec][2]), 3)}


# In pipeline order: speaker, room, padding, noise, channel, codec. The level is set last for
# every item (set_level), so it is not a table entry.
AUGMENTATIONS: tuple[Augmentation, ...] = (
    Augmentation("tempo-pitch", 0.6,
                 lambda g: {"tempo": _r(g.uniform(0.85, 1.15)),
                            "semitones": _r(g.uniform(-2, 2), 2)},
                 lambda a, rng, tempo, semitones: change_tempo_and_pitch(a, tempo, semitones)),
    Augmentation("vtlp", 0.5, lambda g: {"alpha": _r(g.uniform(0.9, 1.1))},
                 lambda a, rng, alpha: vocal_tract_warp(a, alpha)),
    Augmentation("reverb", 0.35, lambda g: {"rt60": _r(g.uniform(0.15, 0.9))},
                 lambda a, rng, rt60: reverberate(a, rt60, rng)),
    Augmentation("pad", 0.6,
                 lambda g: {"lead_s": _r(g.uniform(0, 1.5), 2),
                            "trail_s": _r(g.uniform(0, 1.5), 2)},
                 lambda a, rng, lead_s, trail_s: pad_silence(a, lead_s, trail_s, rng)),
    Augmentation("noise", 0.45,
                 lambda g: {"snr_db": float(g.choice([0, 5, 10, 15, 20, 25, 30])),
                            "slope": float(g.choice([0.0, 1.0, 2.0]))},
                 lambda a, rng, snr_db, slope: add_noise(a, snr_db, slope, rng)),
    Augmentation("telephone", 0.08, lambda g: {"companding": bool(g.random() < 0.5)},
                 lambda a, rng, companding: telephone(a, companding), on_empty=True),
    Augmentation("8khz", 0.07, lambda g: {},
                 lambda a, rng: rate_round_trip(a, TELEPHONE_RATE), on_empty=True),
    Augmentation("codec", 0.12,
                 lambda g: _draw_codec(g),
                 lambda a, rng, codec, compression: lossy_codec(a, codec, compression),
                 on_empty=True),
)
PEAK_DB = (-30.0, 2.0)  # output peak level range; above 0 dBFS is clipped (rarely)


def plan_augmentations(rng: np.random.Generator, empty: bool) -> tuple[tuple[str, tuple], ...]:
    """Which table entries apply, with their parameters (as sorted key/value pairs)."""
    chosen = []
    for step in AUGMENTATIONS:
        happens = rng.random() < step.probability  # drawn for every step: plans stay aligned
        params = step.draw(rng)
        if happens and (step.on_empty or not empty):
            chosen.append((step.name, tuple(sorted(params.items()))))
    return tuple(chosen)


def apply_augmentations(audio: np.ndarray, steps: tuple[tuple[str, tuple], ...],
                        rng: np.random.Generator) -> np.ndarray:
    """Run the planned steps in table order."""
    table = {step.name: step for step in AUGMENTATIONS}
    for name, params in steps:
        audio = table[name].apply(audio, rng, **dict(params))
    return audio


def describe(steps: tuple[tuple[str, tuple], ...]) -> list[str]:
    """Short labels for a manifest: 'vtlp alpha=0.912'."""
    return [" ".join([name, *(f"{k}={v}" for k, v in params)]) for name, params in steps]
