"""Audio loading: formats, rates, channels, and clear errors for bad files."""

import numpy as np
import pytest
import soundfile as sf
import soxr
from common import shared_utterances

from asr.audio import SAMPLE_RATE, AudioError, load_audio


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(shared_utterances("cathy", 1)[0].audio)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two signals over their common length."""
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


@pytest.mark.parametrize(("fmt", "subtype", "suffix"), [
    ("WAV", "PCM_16", ".wav"), ("WAV", "FLOAT", ".wav"), ("FLAC", "PCM_16", ".flac"),
    ("OGG", "VORBIS", ".ogg"), ("OGG", "OPUS", ".opus"), ("MP3", "MPEG_LAYER_III", ".mp3"),
])
def test_formats(tmp_path, speech, fmt, subtype, suffix):
    path = tmp_path / f"speech{suffix}"
    sf.write(path, speech, SAMPLE_RATE, format=fmt, subtype=subtype)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - len(speech)) < 0.1 * SAMPLE_RATE  # codecs may pad
    if fmt in ("WAV", "FLAC"):
        assert similarity(audio, speech) > 0.999


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_any_sample_rate_becomes_16k(tmp_path, speech, rate):
    path = tmp_path / "speech.wav"
    sf.write(path, soxr.resample(speech, SAMPLE_RATE, rate), rate)
    audio = load_audio(path)
    assert abs(len(audio) - len(speech)) <= 2
    assert similarity(audio, speech) > (0.9 if rate == 8000 else 0.99)


def test_stereo_becomes_mono(tmp_path, speech):
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([speech, 0.5 * speech], axis=1), SAMPLE_RATE)
    audio = load_audio(path)
    np.testing.assert_allclose(audio, 0.75 * speech, atol=1e-4)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "nope.wav")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    with pytest.raises(AudioError, match="empty"):
        load_audio(path)


def test_not_audio(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 100)
    with pytest.raises(AudioError, match="notes.wav"):
        load_audio(path)


def test_header_only_wav_has_no_samples(tmp_path):
    path = tmp_path / "header.wav"
    sf.write(path, np.zeros(0, np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(path)


def test_truncated_file_gives_what_is_there_or_a_clear_error(tmp_path, speech):
    for fmt, suffix in (("WAV", ".wav"), ("FLAC", ".flac"), ("OGG", ".ogg")):
        path = tmp_path / f"full{suffix}"
        sf.write(path, speech, SAMPLE_RATE, format=fmt)
        data = path.read_bytes()
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(data[: len(data) // 2])
        try:
            audio = load_audio(cut)
        except AudioError as error:
            assert "cut" in str(error)
        else:
            assert 0 < len(audio) <= len(speech)
