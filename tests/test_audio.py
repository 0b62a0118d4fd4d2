"""Audio loading: formats, rates, channels, and clear errors for bad files."""

import os
import shutil
import socket
import subprocess
import warnings

import numpy as np
import pytest
import soundfile as sf
import soxr
from common import shared_utterances

from asr.audio import SAMPLE_RATE, AudioError, AudioStream, AudioWarning, load_audio


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


def test_truncated_file_gives_what_is_there_with_a_warning_or_a_clear_error(tmp_path, speech):
    for fmt, suffix in (("WAV", ".wav"), ("FLAC", ".flac"), ("OGG", ".ogg")):
        path = tmp_path / f"full{suffix}"
        sf.write(path, speech, SAMPLE_RATE, format=fmt)
        data = path.read_bytes()
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(data[: len(data) // 2])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                audio = load_audio(cut)
            except AudioError as error:
                assert "cut" in str(error)
                continue
        assert 0 < len(audio) <= len(speech)
        if fmt != "OGG":  # an Ogg header tells no length: its last page does
            [warning] = caught
            assert warning.category is AudioWarning
            assert f"header says {len(speech) / SAMPLE_RATE:.1f} s" in str(warning.message)


@pytest.mark.parametrize(("subtype", "width"), [("PCM_16", 2), ("PCM_24", 3), ("FLOAT", 4),
                                                ("ULAW", 1)])
def test_truncated_wav_says_how_much_is_missing(tmp_path, speech, subtype, width):
    path = tmp_path / "full.wav"
    sf.write(path, np.stack([speech, speech], axis=1), SAMPLE_RATE, subtype=subtype)
    data = path.read_bytes()
    start = data.index(b"data") + 8
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: start + 2 * width * SAMPLE_RATE])  # 1 s of 2 channels
    told = f"cut.wav: header says {len(speech) / SAMPLE_RATE:.1f} s, file holds 1.0 s"
    with pytest.warns(AudioWarning, match=told):
        audio = load_audio(cut)
    np.testing.assert_allclose(audio, speech[:SAMPLE_RATE], atol=0.02)


def test_blocks_equal_the_whole_file_read_at_once(tmp_path, speech):
    """Streamed in blocks (resampled as they come), a 44.1 kHz stereo file gives what reading
    it whole and resampling it in one go gives."""
    path = tmp_path / "stereo44k.flac"
    high = soxr.resample(speech, SAMPLE_RATE, 44100)
    sf.write(path, np.stack([high, 0.3 * high], axis=1), 44100)
    data, rate = sf.read(path, dtype="float32")
    expected = soxr.resample(data.mean(axis=1), rate, SAMPLE_RATE, quality="HQ")
    stream = AudioStream(path)
    blocks = list(stream)
    assert len(blocks) > 10 and stream.error is None and stream.warnings == []
    np.testing.assert_allclose(np.concatenate(blocks), expected, atol=1e-6)
    assert stream.samples == len(expected)


def flac_claiming(path, speech, seconds: float):
    """A FLAC file of `speech` whose STREAMINFO says it holds `seconds`."""
    sf.write(path, speech, SAMPLE_RATE, format="FLAC")
    data = bytearray(path.read_bytes())
    field = int.from_bytes(data[21:26], "big")  # 4 bits of bits-per-sample, 36 of samples
    total = round(seconds * SAMPLE_RATE)
    data[21:26] = ((field >> 36 << 36) | total).to_bytes(5, "big")
    path.write_bytes(data)
    assert sf.info(path).frames == total
    return path


def test_a_header_claiming_hours_is_not_believed(tmp_path, speech):
    """A 96 KB file saying 13 hours: `load_audio` refuses it before reading; streamed, what it
    holds is read, with a warning. At 1 Hz the header is refused outright."""
    path = flac_claiming(tmp_path / "claims.flac", speech, 13 * 3600)
    with pytest.raises(AudioError, match="claims.flac: longer than the 4 h"):
        load_audio(path)
    stream = AudioStream(path)
    assert len(speech) - 1 <= sum(len(b) for b in stream) <= len(speech)  # maybe not the last
    told = f"header says 46800.0 s, file holds {len(speech) / SAMPLE_RATE:.1f} s"
    assert told in stream.warnings[0]
    wav = tmp_path / "one_hertz.wav"
    sf.write(wav, speech, SAMPLE_RATE, subtype="PCM_16")
    data = bytearray(wav.read_bytes())
    data[24:32] = (1).to_bytes(4, "little") + (2).to_bytes(4, "little")  # rate, bytes per second
    wav.write_bytes(data)
    with pytest.raises(AudioError, match="sample rate of 1 Hz is not audio"):
        AudioStream(wav)


def test_not_a_regular_file(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_path / "socket.wav"))
    for path, message in ((tmp_path, "is a directory"), (fifo, r"not a regular file \(a FIFO\)"),
                          (os.devnull, r"not a regular file \(a device\)"),
                          (tmp_path / "socket.wav", r"not a regular file \(a socket\)"),
                          (tmp_path / ("x" * 300 + ".wav"), "File name too long")):
        with pytest.raises(AudioError, match=message):
            load_audio(path)
    unix.close()


def test_a_wav_of_unknown_length_is_read_whole_without_a_warning(tmp_path, speech):
    """A data chunk of size 0xFFFFFFFF (as written to a pipe) means "to the end of the file"."""
    path = tmp_path / "piped.wav"
    sf.write(path, speech, SAMPLE_RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[40:44] = b"\xff" * 4
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_audio(path)) == len(speech)


needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="no ffmpeg")


@needs_ffmpeg
def test_formats_libsndfile_cannot_read_stream_through_ffmpeg(tmp_path, speech):
    wav = tmp_path / "speech.wav"
    sf.write(wav, speech, SAMPLE_RATE)
    m4a = tmp_path / "speech.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), "-c:a", "aac",
                    str(m4a)], check=True)
    stream = AudioStream(m4a)
    assert stream.header_seconds is None  # libsndfile can't open it
    audio = np.concatenate(list(stream))
    assert abs(len(audio) - len(speech)) < 0.1 * SAMPLE_RATE  # the codec pads
    assert similarity(audio, speech) > 0.99
    broken = tmp_path / "broken.m4a"
    broken.write_bytes(m4a.read_bytes()[:200])
    with pytest.raises(AudioError, match="broken.m4a: ffmpeg could not decode it"):
        load_audio(broken)
