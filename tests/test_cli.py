"""`asr` end to end on real audio with the bundled model: formats, many files, bad input."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from common import EXAMPLE, shared_utterances

from asr.audio import SAMPLE_RATE, load_audio
from asr.defaults import OFFLINE_MODEL
from asr.formats import cues

pytestmark = pytest.mark.skipif(not OFFLINE_MODEL.is_file(), reason="no bundled model")


def asr(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "asr", *args], capture_output=True,
                            text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Three real utterances as WAV files: 16 kHz mono, 44.1 kHz stereo, and FLAC."""
    folder = tmp_path_factory.mktemp("audio")
    utterances = shared_utterances("cathy", 3)
    audio = [load_audio(u.audio) for u in utterances]
    paths = [folder / "mono16k.wav", folder / "stereo44k.wav", folder / "clip.flac"]
    sf.write(paths[0], audio[0], SAMPLE_RATE)
    import soxr

    resampled = soxr.resample(audio[1], SAMPLE_RATE, 44100)
    sf.write(paths[1], np.stack([resampled, resampled], axis=1), 44100)
    sf.write(paths[2], audio[2], SAMPLE_RATE)
    return paths, [u.text for u in utterances]


def test_help_teaches():
    out = asr("--help").stdout
    for command in ("transcribe", "evaluate", "train", "export"):
        assert command in out
    assert "--format" in asr("transcribe", "--help").stdout


@pytest.mark.parametrize("options", [(), ("--int8",), ("--streaming", "--int8")])
def test_the_readme_example_is_transcribed_correctly(options):
    """The quick-start command (a held-out speaker and sentence; see examples/README.md)."""
    assert asr("transcribe", str(EXAMPLE), *options).stdout == "he could not see himself\n"


def test_text_output_of_one_file(recordings):
    paths, _ = recordings
    text = asr("transcribe", str(paths[0]), "--lm", "none").stdout.strip()
    assert text and "\t" not in text and set(text) <= set("abcdefghijklmnopqrstuvwxyz' ")


def test_jsonl_for_many_files_in_input_order(recordings):
    paths, _ = recordings
    result = asr("transcribe", *map(str, paths), "--format", "jsonl", "--lm", "none")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    for row in rows:
        assert row["text"] and 1.0 < row["duration"] < 10.0
        times = [(w["start"], w["end"]) for w in row["words"]]
        assert all(0 <= a < b <= row["duration"] + 0.1 for a, b in times)
        assert times == sorted(times)
        assert " ".join(w["word"] for w in row["words"]) == row["text"]


def test_json_srt_vtt(recordings, tmp_path):
    paths, _ = recordings
    data = json.loads(asr("transcribe", str(paths[0]), "--format", "json", "--lm", "none").stdout)
    assert data[0]["path"] == str(paths[0])
    srt = asr("transcribe", str(paths[0]), "--format", "srt", "--lm", "none").stdout
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    vtt = asr("transcribe", str(paths[0]), "--format", "vtt", "--lm", "none").stdout
    assert vtt.startswith("WEBVTT\n\n00:00:0")
    asr("transcribe", *map(str, paths), "--format", "srt", "--output-dir", str(tmp_path),
        "--lm", "none")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.srt", "mono16k.srt",
                                                          "stereo44k.srt"]


def test_bad_files_are_reported_and_the_rest_transcribed(recordings, tmp_path):
    paths, _ = recordings
    empty = tmp_path / "empty.wav"
    empty.touch()
    text = tmp_path / "notes.mp3"
    text.write_text("not audio at all\n" * 50)
    missing = tmp_path / "missing.flac"
    result = asr("transcribe", str(empty), str(paths[0]), str(text), str(missing),
                 str(paths[2]), "--format", "jsonl", "--lm", "none", check=False)
    assert result.returncode == 1
    assert [json.loads(line)["path"] for line in result.stdout.splitlines()] == [
        str(paths[0]), str(paths[2])]
    for bad in (empty, text, missing):
        assert str(bad) in result.stderr
    assert "3 of 5 file(s) failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_silence_gives_an_empty_transcript(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(3 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    row = json.loads(asr("transcribe", str(path), "--format", "jsonl", "--lm", "none").stdout)
    assert row["text"] == "" and row["words"] == [] and row["duration"] == 3.0


def test_ten_minute_file(tmp_path):
    """A long recording is cut at quiet points; timestamps run through the whole file."""
    utterances = shared_utterances("cathy", 40)
    pieces, total = [], 0
    while total < 600 * SAMPLE_RATE:
        for u in utterances:
            pieces += [load_audio(u.audio), np.zeros(SAMPLE_RATE // 2, np.float32)]
            total += len(pieces[-2]) + len(pieces[-1])
    audio = np.concatenate(pieces)[: 600 * SAMPLE_RATE]
    path = tmp_path / "long.flac"
    sf.write(path, audio, SAMPLE_RATE)
    row = json.loads(asr("transcribe", str(path), "--format", "jsonl", "--lm", "none").stdout)
    assert row["duration"] == 600.0
    starts = [w["start"] for w in row["words"]]
    assert starts == sorted(starts) and starts[-1] > 550
    assert len(row["words"]) > 600  # about 1,500 words are spoken


def test_evaluate_prints_wer_cer_rtf(tmp_path):
    from asr.corpora import write_manifest

    manifest = tmp_path / "test.jsonl"
    write_manifest(shared_utterances("an4", 5), manifest)
    out = asr("evaluate", str(manifest), "--lm", "none").stdout
    assert "utterances 5" in out and "WER" in out and "CER" in out and "RTF" in out


def test_subtitle_cues_respect_limits():
    from asr.decode import Word

    words = [Word(f"word{i}", i * 0.4, i * 0.4 + 0.3) for i in range(40)]
    for start, end, text in cues(words):
        assert len(text) <= 42 and end - start <= 5.0


def test_streaming_path_gives_the_same_formats(recordings):
    from asr.defaults import STREAMING_MODEL, language_model
    from streaming.engine import StreamingRecognizer

    paths, _ = recordings
    result = asr("transcribe", "--streaming", *map(str, paths), "--format", "jsonl")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    engine = StreamingRecognizer(STREAMING_MODEL, lm=language_model(None))  # the CLI's default
    for path, row in zip(paths, rows, strict=True):
        assert row["text"] == engine.transcribe(load_audio(path)).text
        assert row["duration"] > 1.0
    vtt = asr("transcribe", "--streaming", "--int8", str(paths[0]), "--format", "vtt").stdout
    assert vtt.startswith("WEBVTT")


NOT_UTF8 = os.fsdecode(b"caf\xe9.wav")  # a name with byte 0xE9 (Latin-1 e-acute), not UTF-8
EXAMPLE_TEXT = "he could not see himself"  # what the defaults (with the LM) print


def test_a_file_name_that_is_not_utf8_is_shown_escaped_and_the_rest_go_on(tmp_path):
    good, odd = tmp_path / "good.wav", tmp_path / NOT_UTF8
    bad = tmp_path / os.fsdecode(b"bad\xff.wav")
    shutil.copy(EXAMPLE, good)
    shutil.copy(EXAMPLE, odd)
    bad.write_bytes(b"not audio" * 100)
    assert os.fsencode(odd).endswith(b"caf\xe9.wav")  # the real bytes on disk
    result = asr("transcribe", str(good), str(odd), str(bad), "--format", "jsonl", check=False)
    assert result.returncode == 1  # one file failed
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["path"], r["text"]) for r in rows] == [
        (str(good), EXAMPLE_TEXT), (str(tmp_path / "caf\\xe9.wav"), EXAMPLE_TEXT)]
    assert "bad\\xff.wav" in result.stderr and "1 of 3 file(s) failed" in result.stderr
    assert "Traceback" not in result.stderr
    text = asr("transcribe", str(odd), str(good), "--no-progress").stdout
    assert text == f"{tmp_path}/caf\\xe9.wav\t{EXAMPLE_TEXT}\n{good}\t{EXAMPLE_TEXT}\n"


def test_output_dir_writes_one_file_per_input_without_collisions(tmp_path):
    inputs = [tmp_path / "a" / "x.wav", tmp_path / "b" / "x.flac", tmp_path / "a" / "y.wav",
              tmp_path / "a" / NOT_UTF8]
    for path in inputs:
        path.parent.mkdir(exist_ok=True)
        sf.write(os.fsencode(path), load_audio(EXAMPLE), SAMPLE_RATE)  # bytes: any name
    out = tmp_path / "out"
    result = asr("transcribe", *map(str, inputs), str(inputs[0]), "--output-dir", str(out),
                 "--no-progress")
    names = ["x.wav.txt", "x.flac.txt", "y.txt", os.fsdecode(b"caf\xe9.txt"), "x.wav.2.txt"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    for name in names:
        assert (out / name).read_text() == EXAMPLE_TEXT + "\n"
    assert result.stdout == ""
    for path, name in zip([*inputs, inputs[0]], names, strict=True):  # where each one went
        assert f"{path} -> {out / name}".replace("\udce9", "\\xe9") in result.stderr
    asr("transcribe", *map(str, inputs[:2]), "--format", "json", "--output-dir", str(out))
    for name, path in (("x.wav.json", inputs[0]), ("x.flac.json", inputs[1])):
        data = json.loads((out / name).read_text())
        assert data["path"] == str(path) and data["text"] == EXAMPLE_TEXT


def test_int8_with_a_model_of_ones_own_is_refused():
    for options in (("--int8", "--model", "my.onnx"), ("--int8", "--streaming", "--model",
                                                       "my.onnx")):
        result = asr("transcribe", str(EXAMPLE), *options, check=False)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith("asr transcribe: error: --int8 ")
        assert len(result.stderr.splitlines()) == 1  # one line, no traceback


@pytest.mark.parametrize("command", ["transcribe", "listen", "serve"])
def test_bad_decoding_settings_are_one_line(command):
    for option, value in (("--beam-size", "0"), ("--rescore-nbest", "0"),
                          ("--rescore-weight", "-1")):
        args = [command, *([str(EXAMPLE)] if command == "transcribe" else []), option, value]
        result = asr(*args, check=False)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith(f"asr {command}: error: ")
        assert f"({option})" in result.stderr
        assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("model", ["streaming", "not onnx"])
def test_a_model_that_is_not_an_offline_model_is_one_line(tmp_path, model):
    from asr.defaults import STREAMING_MODEL

    path = tmp_path / "model.onnx"
    if model == "streaming":
        shutil.copy(STREAMING_MODEL, path)
    else:
        path.write_bytes(b"\x00not a model\xff" * 100)
    result = asr("transcribe", str(EXAMPLE), "--model", str(path), check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"asr transcribe: error: {path}: not ")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("engine", [(), ("--streaming",)])
def test_the_thread_count_does_not_change_the_output(recordings, engine):
    paths, _ = recordings
    outputs = {asr("transcribe", *map(str, paths), "--format", "jsonl", "--threads", threads,
                   *engine).stdout for threads in ("1", "2", "0")}
    assert len(outputs) == 1


def test_progress_per_file_on_a_terminal_only(recordings):
    """With stderr a terminal: a bar counting seconds of audio (the headers' total), advanced
    as each file is done; with stderr a pipe or file: nothing but warnings and errors."""
    import fcntl
    import pty
    import struct
    import termios

    paths, _ = recordings
    assert asr("transcribe", *map(str, paths), "--lm", "none").stderr == ""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    try:
        result = subprocess.run([sys.executable, "-m", "asr", "transcribe", *map(str, paths),
                                 "--lm", "none"], stdout=subprocess.PIPE, stderr=follower,
                                timeout=300)
        os.close(follower)
        shown = b""
        while chunk := _read(leader):
            shown += chunk
    finally:
        os.close(leader)
    assert result.returncode == 0
    total = sum(sf.info(str(p)).duration for p in paths)
    screens = shown.decode().split("\r")
    done = [s for s in screens if "s audio" in s]
    assert f" {total:.0f}/{total:.0f} s audio" in done[-1] and "100%" in done[-1]


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # the terminal's other end is closed: all read
        return b""


def test_evaluate_reads_missing_durations_and_leaves_out_unreadable_audio(tmp_path):
    from asr.evaluate import format_duration

    shutil.copy(EXAMPLE, tmp_path / "example.wav")
    manifest = tmp_path / "test.jsonl"
    manifest.write_text(
        json.dumps({"audio": "example.wav", "text": EXAMPLE_TEXT}) + "\n"
        + json.dumps({"audio": "gone.wav", "text": "lost", "duration": 1.0}) + "\n")
    result = asr("evaluate", str(manifest), check=False)
    assert result.returncode == 1
    assert "gone.wav: no such file" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.startswith("utterances 1  unreadable 1 (left out)  audio 3.0 s  "
                                    "WER 0.00%  CER 0.00%")
    assert [format_duration(s) for s in (2.99, 150, 5400)] == ["3.0 s", "2.5 min", "1.50 h"]
