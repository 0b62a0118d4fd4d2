"""Bad and awkward input to file transcription, through real `asr transcribe` processes and the
Python API: each gets a clear one-line message (a warning or a refusal, no traceback), and the
good file given beside it is still transcribed."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from common import EXAMPLE

from asr.audio import SAMPLE_RATE, load_audio
from asr.defaults import OFFLINE_MODEL, STREAMING_MODEL
from asr.transcribe import MAX_SEGMENT_SECONDS, cut_segments

pytestmark = pytest.mark.skipif(not OFFLINE_MODEL.is_file(), reason="no bundled model")
EXAMPLE_TEXT = "he could not see himself"  # with the LM; see examples/README.md
MB = 1 << 20


class Run:
    """A finished `asr` process: exit status, output, and peak resident memory in bytes."""

    def __init__(self, *args: str) -> None:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            process = subprocess.Popen([sys.executable, "-m", "asr", *args], stdout=out,
                                       stderr=err, stdin=subprocess.DEVNULL)
            watchdog = threading.Timer(600, process.kill)
            watchdog.start()
            _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory
            watchdog.cancel()
            process.returncode = self.returncode = os.waitstatus_to_exitcode(status)
            self.peak_rss = usage.ru_maxrss * 1024  # KiB on Linux
            out.seek(0)
            err.seek(0)
            self.stdout, self.stderr = out.read().decode(), err.read().decode()

    def rows(self) -> dict[str, dict]:
        """The `--format jsonl` results by path."""
        return {row["path"]: row for row in map(json.loads, self.stdout.splitlines())}

    def assert_clean_messages(self, count: int) -> None:
        """`count` one-line messages of the CLI on stderr, and no traceback."""
        lines = self.stderr.splitlines()
        assert len(lines) == count and all(line.startswith("asr transcribe: ") for line in lines)
        assert "Traceback" not in self.stderr


def transcribe(*paths: Path) -> Run:
    return Run("transcribe", *map(str, paths), "--format", "jsonl", "--threads", "1",
               "--no-progress")


def assert_example_transcribed(run: Run) -> None:
    """The good file given beside the bad one came through."""
    assert run.rows()[str(EXAMPLE)]["text"] == EXAMPLE_TEXT


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(EXAMPLE)


def write_looped(path: Path, speech: np.ndarray, seconds: float) -> Path:
    """A real utterance and half a second of silence over and over, as 48 kHz stereo PCM."""
    rate = 48000
    utterance = soxr.resample(np.concatenate([speech, np.zeros(SAMPLE_RATE // 2, np.float32)]),
                              SAMPLE_RATE, rate).astype(np.float32)
    with sf.SoundFile(path, "w", rate, 2, subtype="PCM_16") as file:
        for _ in range(math.ceil(seconds * rate / len(utterance))):
            file.write(np.stack([utterance, 0.8 * utterance], axis=1))
    return path


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, speech) -> Run:
    """150 s of speech and the example: the memory that any transcription takes (torch, the
    model, a full batch of segments)."""
    path = write_looped(tmp_path_factory.mktemp("baseline") / "medium.wav", speech, 150)
    run = transcribe(path, EXAMPLE)
    assert run.returncode == 0
    assert_example_transcribed(run)
    return run


def test_long_file_is_streamed_in_bounded_memory(tmp_path, speech, baseline):
    """10 minutes of real speech as 48 kHz stereo, 230 MB as float32 if read whole (the old
    path took 380 MB more than a short file): streamed, it takes hardly more memory than
    150 s do, its words are timed through to the end, and the file beside it comes through."""
    path = write_looped(tmp_path / "long.wav", speech, 600)
    whole = sf.info(path).frames * 2 * 4
    run = transcribe(path, EXAMPLE)
    assert run.returncode == 0, run.stderr
    row = run.rows()[str(path)]
    assert row["duration"] > 600
    starts = [w["start"] for w in row["words"]]
    assert starts == sorted(starts) and starts[-1] > 595
    assert len(row["words"]) > 600  # 172 repeats of a five-word sentence
    assert_example_transcribed(run)
    assert run.peak_rss - baseline.peak_rss < 40 * MB < whole / 5


def test_header_claiming_13_hours_is_refused_in_small_memory(tmp_path, speech, baseline):
    """96 KB of samples whose header says 1 Hz, i.e. 13.3 hours (read whole and resampled,
    this took 6 GB), is refused by its implausible rate. A data chunk claiming 13 hours in a
    96 KB file is a truncated file: what it holds is transcribed, with a warning."""
    pcm = tmp_path / "pcm.wav"
    sf.write(pcm, speech, SAMPLE_RATE, subtype="PCM_16")
    data = bytearray(pcm.read_bytes())
    one_hertz = tmp_path / "one_hertz.wav"
    struct.pack_into("<II", data, 24, 1, 2)  # sample rate, bytes per second
    one_hertz.write_bytes(data)
    data = bytearray(pcm.read_bytes())
    long_claim = tmp_path / "long_claim.wav"
    struct.pack_into("<I", data, 40, 13 * 3600 * SAMPLE_RATE * 2)  # the data chunk's size
    long_claim.write_bytes(data)
    run = transcribe(one_hertz, long_claim, EXAMPLE)
    assert run.returncode == 1
    run.assert_clean_messages(3)
    assert f"{one_hertz}: the header's sample rate of 1 Hz is not audio" in run.stderr
    assert f"{long_claim}: header says 46800.0 s, file holds 3.0 s" in run.stderr
    assert "1 of 3 file(s) failed" in run.stderr
    assert run.rows()[str(long_claim)]["text"] == EXAMPLE_TEXT
    assert_example_transcribed(run)
    assert run.peak_rss - baseline.peak_rss < 50 * MB


def test_truncated_wav_is_transcribed_with_a_warning(tmp_path, speech):
    """A WAV cut after 1 s of its 3 s: the second that is there is transcribed, and the
    header's length and the file's are told."""
    full = tmp_path / "full.wav"
    sf.write(full, speech, SAMPLE_RATE, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 2 * SAMPLE_RATE])
    run = transcribe(cut, EXAMPLE)
    assert run.returncode == 0
    run.assert_clean_messages(1)
    assert f"asr transcribe: warning: {cut}: header says 3.0 s, file holds 1.0 s" in run.stderr
    assert run.rows()[str(cut)]["duration"] == 1.0
    assert_example_transcribed(run)


def test_directory_fifo_device_and_missing_file_are_named(tmp_path):
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    missing = tmp_path / "missing.wav"
    run = transcribe(folder, fifo, Path(os.devnull), missing, EXAMPLE)
    assert run.returncode == 1
    run.assert_clean_messages(5)
    for message in (f"{folder}: is a directory", f"{fifo}: not a regular file (a FIFO)",
                    f"{os.devnull}: not a regular file (a device)", f"{missing}: no such file",
                    "4 of 5 file(s) failed"):
        assert message in run.stderr
    assert list(run.rows()) == [str(EXAMPLE)]
    assert_example_transcribed(run)


@pytest.mark.parametrize("engine", [(), ("--streaming", "--int8")])
def test_float_file_of_int16_range_values_is_refused_alone(tmp_path, speech, engine):
    """A float WAV holding unscaled int16 values is refused as that file's error (offline it
    would be garbage, streaming it used to fail the whole batch); the good file still goes."""
    hot = tmp_path / "hot.wav"
    sf.write(hot, speech * 32767, SAMPLE_RATE, subtype="FLOAT")
    run = Run("transcribe", str(hot), str(EXAMPLE), "--format", "jsonl", "--no-progress",
              *engine)
    assert run.returncode == 1
    run.assert_clean_messages(2)
    assert f"{hot}: float samples reach" in run.stderr and "1 of 2 file(s) failed" in run.stderr
    assert list(run.rows()) == [str(EXAMPLE)]
    assert_example_transcribed(run)


@pytest.fixture(scope="module")
def one_sample(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("short") / "one_sample.wav"
    sf.write(path, np.array([0.5], np.float32), SAMPLE_RATE)
    return path


@pytest.mark.parametrize("engine", [(), ("--streaming", "--int8")])
def test_one_sample_file_gets_an_empty_transcript_and_a_warning(one_sample, engine):
    """The model would guess a letter from one sample; nothing is transcribed instead."""
    run = Run("transcribe", str(one_sample), str(EXAMPLE), "--format", "jsonl", "--no-progress",
              *engine)
    assert run.returncode == 0
    run.assert_clean_messages(1)
    assert f"warning: {one_sample}: 0.0001 s of audio is too short to hold a word" in run.stderr
    row = run.rows()[str(one_sample)]
    assert row["text"] == "" and row["words"] == []
    assert_example_transcribed(run)


@pytest.fixture(scope="module")
def recognizer():
    from asr.transcribe import Recognizer

    return Recognizer()


def test_one_sample_through_the_api(recognizer, one_sample):
    assert recognizer.transcribe(load_audio(one_sample)).text == ""
    [result] = recognizer.transcribe_files([str(one_sample)])
    assert result.text == "" and "too short" in result.warnings[0]
    if STREAMING_MODEL.is_file():
        from streaming.engine import StreamingRecognizer

        assert StreamingRecognizer().transcribe_file(one_sample) == []


BAD_ARRAYS = [
    (np.zeros((2, 0), np.float32), ValueError, "empty audio"),
    (np.zeros(0, np.float32), ValueError, "empty audio"),
    (np.full(1600, np.nan, np.float32), ValueError, "NaN"),
    (np.zeros(1600, np.int32), TypeError, "int32"),
    (EXAMPLE, TypeError, "not a file name .*load_audio"),
    (str(EXAMPLE), TypeError, "not a file name .*load_audio"),
]
BAD_RATES = [("16000", TypeError), (None, TypeError), (0, ValueError), (-1, ValueError),
             (math.nan, ValueError), (16000.5, ValueError)]


def test_bad_arrays_and_rates_are_refused_by_the_offline_api(recognizer, speech):
    for audio, error, message in BAD_ARRAYS:
        with pytest.raises(error, match=message):
            recognizer.transcribe(audio)
    for rate, error in BAD_RATES:
        with pytest.raises(error, match="sample_rate must be a positive whole number of Hz"):
            recognizer.transcribe(speech, rate)
    assert recognizer.transcribe(speech).text == EXAMPLE_TEXT  # the recognizer still works
    resampled = soxr.resample(speech, SAMPLE_RATE, 44100)
    assert recognizer.transcribe(resampled, 44100).text == EXAMPLE_TEXT


@pytest.mark.skipif(not STREAMING_MODEL.is_file(), reason="no bundled streaming model")
def test_bad_arrays_and_rates_are_refused_by_the_streaming_api(speech):
    from streaming.engine import StreamingRecognizer

    engine = StreamingRecognizer()
    expected = StreamingRecognizer().transcribe(speech).text
    for audio, error, message in BAD_ARRAYS:
        with pytest.raises(error, match=message):
            engine.accept_waveform(audio, SAMPLE_RATE)
    for rate, error in BAD_RATES:
        with pytest.raises(error, match="sample_rate must be a positive whole number of Hz"):
            engine.accept_waveform(speech, rate)
    engine.accept_waveform(speech, SAMPLE_RATE)  # nothing was taken before, and it goes on
    assert engine.final_result().text == expected


def test_segments_cut_from_blocks_equal_those_cut_from_the_whole(speech):
    rng = np.random.default_rng(0)
    audio = np.concatenate([speech * rng.uniform(0.2, 1.0) for _ in range(30)])  # 90 s
    whole = list(cut_segments([audio]))
    assert len(whole) > 4 and all(len(s) <= MAX_SEGMENT_SECONDS * SAMPLE_RATE for _, s in whole)
    sizes = rng.integers(1, 40000, size=len(audio) // 1000)
    bounds = np.cumsum(sizes)[np.cumsum(sizes) < len(audio)]
    blocks = np.split(audio, bounds)
    streamed = list(cut_segments(iter(blocks)))
    assert [start for start, _ in streamed] == [start for start, _ in whole]
    np.testing.assert_array_equal(np.concatenate([s for _, s in streamed]), audio)
