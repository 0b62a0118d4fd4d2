"""The log-mel frontend against librosa, and its streaming property."""

import librosa
import numpy as np
import torch
from common import shared_utterances

from asr.audio import load_audio
from asr.features import FeatureConfig, LogMel, log_mel, mel_filterbank, num_frames

CONFIG = FeatureConfig()


def librosa_log_mel(audio: np.ndarray) -> np.ndarray:
    """The same frames with librosa: causal framing = `context_samples` of zeros, no centring."""
    padded = np.concatenate([np.zeros(CONFIG.context_samples, np.float32), audio])
    power = librosa.feature.melspectrogram(
        y=padded, sr=CONFIG.sample_rate, n_fft=CONFIG.n_fft, hop_length=CONFIG.hop_length,
        n_mels=CONFIG.n_mels, center=False, power=2.0, window="hann")
    return np.log(np.maximum(power, CONFIG.log_floor)).T


def test_mel_filterbank_matches_librosa():
    reference = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)
    np.testing.assert_allclose(mel_filterbank(CONFIG), reference, atol=1e-7)


def test_log_mel_matches_librosa_on_real_speech():
    audio = load_audio(shared_utterances("cathy", 1)[0].audio)
    audio = audio[: len(audio) // CONFIG.hop_length * CONFIG.hop_length]
    ours = log_mel(audio).numpy()
    reference = librosa_log_mel(audio)
    assert ours.shape == reference.shape == (len(audio) // 160, 80)
    # a float32 DFT against librosa's FFT: equal to within float32 rounding
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)


def test_frame_count_and_timing():
    assert num_frames(16000, CONFIG) == 100
    assert num_frames(16001, CONFIG) == 101
    assert num_frames(16000, CONFIG, multiple=3) == 102
    assert log_mel(np.zeros(16000, np.float32)).shape == (100, 80)


def test_chunked_frames_equal_whole():
    """Carrying the last n_fft - hop samples gives the very same frames as one pass."""
    audio = load_audio(shared_utterances("an4", 1)[0].audio)[: 160 * 150]
    whole = log_mel(audio)
    frontend = LogMel(CONFIG)
    context = torch.zeros(1, CONFIG.context_samples)
    pieces, position = [], 0
    for size in [160, 480, 1600, 320, 9600, 160 * 150]:
        chunk = torch.from_numpy(audio[position : position + size])[None]
        if chunk.shape[1] == 0:
            break
        signal = torch.cat([context, chunk], dim=1)
        pieces.append(frontend(signal)[0])
        context = signal[:, -CONFIG.context_samples :]
        position += size
    torch.testing.assert_close(torch.cat(pieces), whole, atol=1e-5, rtol=0)
