"""Corpus readers on the real shared speech data and on small corpora built from it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import SAMPLE_RATE, load_audio
from asr.corpora import (
    CorpusError,
    Utterance,
    read_common_voice,
    read_corpus,
    read_librispeech,
    read_manifest,
    split_by_speaker,
    total_hours,
    write_manifest,
)
from asr.defaults import SHARED_SPEECH

SPEECH = SHARED_SPEECH
MANIFEST = SPEECH / "manifest.jsonl"


@pytest.fixture(scope="module")
def corpus() -> list[Utterance]:
    if not MANIFEST.is_file():
        pytest.skip(f"shared speech data not found at {SPEECH}")
    return read_manifest(MANIFEST)


@pytest.fixture(scope="module")
def samples(corpus: list[Utterance]) -> list[tuple[Utterance, np.ndarray]]:
    """Four short real utterances from different speakers, decoded to 16 kHz samples."""
    picked: dict[str, Utterance] = {}
    for utterance in corpus:
        if len(utterance.text.split()) >= 2 and utterance.duration < 3:
            picked.setdefault(utterance.speaker, utterance)
        if len(picked) == 4:
            break
    return [(u, load_audio(u.audio)) for u in picked.values()]


def test_read_real_manifest(corpus: list[Utterance]) -> None:
    assert len(corpus) == 10619
    first = corpus[0]
    assert first == Utterance(SPEECH / "audio/an4/train/an251-fash-b.opus", "yes", 1.0, "an4_fash")
    assert corpus[-1].text == "his head hurt even worse"
    assert corpus[-1].speaker == "so762_9647"
    assert all(u.duration > 0 for u in corpus)
    assert all(u.audio.is_absolute() and u.audio.is_file() for u in corpus)
    assert len({u.speaker for u in corpus}) > 100
    assert 5 < total_hours(corpus) < 100
    assert read_corpus(MANIFEST) == corpus


def test_read_librispeech(tmp_path: Path, samples: list[tuple[Utterance, np.ndarray]]) -> None:
    split = tmp_path / "LibriSpeech" / "dev-clean"
    expected = {}
    for index, (utterance, audio) in enumerate(samples):
        speaker, chapter = str(100 + index), str(7000 + index)
        folder = split / speaker / chapter
        folder.mkdir(parents=True)
        utterance_id = f"{speaker}-{chapter}-0000"
        sf.write(folder / f"{utterance_id}.flac", audio, SAMPLE_RATE)
        lines = [f"{utterance_id} {utterance.text.upper()}",
                 f"{speaker}-{chapter}-0001 ...",  # normalises to nothing: skipped
                 ""]
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines))
        expected[folder / f"{utterance_id}.flac"] = (utterance.text, len(audio), speaker)

    for root in (tmp_path, split):
        result = read_librispeech(root)
        assert {u.audio: (u.text, round(u.duration * SAMPLE_RATE), u.speaker)
                for u in result} == expected
    assert read_corpus(tmp_path) == read_librispeech(tmp_path)

    next(split.rglob("*.flac")).unlink()
    with pytest.raises(CorpusError, match=r"\.trans\.txt:1: audio file not found: .*\.flac"):
        read_librispeech(split)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="empty: no LibriSpeech"):
        read_librispeech(tmp_path / "empty")


def _write_mp3(path: Path, audio: np.ndarray) -> None:
    try:
        sf.write(path, audio, SAMPLE_RATE, format="MP3")
    except (sf.LibsndfileError, TypeError, ValueError):
        wav = path.with_suffix(".wav")
        sf.write(wav, audio, SAMPLE_RATE)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), str(path)],
                       check=True)
        wav.unlink()


def test_read_common_voice(tmp_path: Path, samples: list[tuple[Utterance, np.ndarray]]) -> None:
    (tmp_path / "clips").mkdir()
    rows = ["client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale"]
    for index, (utterance, audio) in enumerate(samples):
        clip = f"common_voice_en_{index}.mp3"
        _write_mp3(tmp_path / "clips" / clip, audio)
        sentence = f'"{utterance.text.capitalize()}," she said.'  # bare quotes, QUOTE_NONE
        rows.append(f"spk{index % 2}\t{clip}\t{sentence}\t2\t0\t\t\t\ten")
    rows.append("spk9\tcommon_voice_en_99.mp3\t?!\t2\t0\t\t\t\ten")  # empty text: skipped
    tsv = tmp_path / "train.tsv"
    tsv.write_text("\n".join(rows) + "\n")

    result = read_common_voice(tsv)
    assert [u.text for u in result] == [f"{u.text} she said" for u, _ in samples]
    assert [u.speaker for u in result] == ["spk0", "spk1", "spk0", "spk1"]
    assert [u.audio for u in result] == [
        tmp_path / "clips" / f"common_voice_en_{i}.mp3" for i in range(4)]
    for utterance, (_, audio) in zip(result, samples, strict=True):
        assert utterance.duration == pytest.approx(len(audio) / SAMPLE_RATE, abs=0.1)
    assert read_corpus(tsv) == result

    (tmp_path / "clips" / "common_voice_en_2.mp3").unlink()
    with pytest.raises(CorpusError, match=r"train\.tsv:4: .*common_voice_en_2\.mp3"):
        read_common_voice(tsv)
    bad = tmp_path / "bad.tsv"
    bad.write_text("client_id\tpath\nx\ty.mp3\n")
    with pytest.raises(CorpusError, match=r"bad\.tsv:1: missing column\(s\) sentence"):
        read_common_voice(bad)


def test_manifest_round_trip(tmp_path: Path, corpus: list[Utterance]) -> None:
    local = tmp_path / "data" / "audio" / "clip.opus"
    local.parent.mkdir(parents=True)
    local.write_bytes(corpus[0].audio.read_bytes())
    utterances = [*corpus[::1000], Utterance(local, "hello world", 1.25)]
    path = tmp_path / "data" / "lists" / "train.jsonl"  # parent folder does not exist yet
    write_manifest(utterances, path)

    assert read_manifest(path) == utterances
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert entries[0]["audio"] == str(corpus[0].audio)  # outside the manifest folder: absolute
    assert entries[-1] == {"audio": str(local), "text": "hello world", "duration": 1.25,
                           "speaker": ""}
    write_manifest(utterances, tmp_path / "data" / "all.jsonl")
    assert json.loads((tmp_path / "data" / "all.jsonl").read_text().splitlines()[-1])["audio"] \
        == "audio/clip.opus"
    assert sorted(p.name for p in path.parent.iterdir()) == ["train.jsonl"]  # no temp files left


@pytest.mark.parametrize(("line", "message"), [
    ('{"audio": "a.opus", "duration": 1.0}', "missing 'text'"),
    ('{"text": "hi", "duration": 1.0}', "missing 'audio'"),
    ('{"audio": "a.opus", "text": "hi"}', "audio file not found"),  # duration read from it
    ('{"audio": "a.opus", "text": "hi", "duration": "long"}', "'duration' must be a positive"),
    ('{"audio": "a.opus", "text": "hi", "duration": -1}', "'duration' must be a positive"),
    ('{"audio": "a.opus", "text": 3, "duration": 1}', "'text' must be a string"),
    ('{"audio": "a.opus", "text": "hi"', "not valid JSON"),
    ('["a.opus", "hi", 1.0]', "expected a JSON object"),
])
def test_bad_manifest_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "manifest.jsonl"
    good = '{"audio": "a.opus", "text": "Hi there!", "duration": 1.5, "extra": 1}'
    path.write_text(f"{good}\n\n{good}\n{line}\n")
    with pytest.raises(CorpusError, match=rf"manifest\.jsonl:4: {message}"):
        read_manifest(path)


def test_read_corpus_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="unknown corpus kind"):
        read_corpus(tmp_path / "corpus.txt")
    with pytest.raises(CorpusError, match="missing.jsonl: cannot read manifest"):
        read_corpus(tmp_path / "missing.jsonl")


def test_split_by_speaker(corpus: list[Utterance]) -> None:
    train, dev = split_by_speaker(corpus, 0.1, seed=3)
    assert not {u.speaker for u in train} & {u.speaker for u in dev}
    assert sorted(map(str, (u.audio for u in train + dev))) == sorted(str(u.audio) for u in corpus)
    assert total_hours(dev) / total_hours(corpus) == pytest.approx(0.1, abs=0.01)
    assert split_by_speaker(corpus, 0.1, seed=3) == (train, dev)
    assert split_by_speaker(corpus, 0.1, seed=4) != (train, dev)
    assert split_by_speaker(corpus, 0.0) == (corpus, [])


def test_split_anonymous_speakers() -> None:
    utterances = [Utterance(Path(f"/a/{i}.flac"), "x", 1.0) for i in range(10)]
    train, dev = split_by_speaker(utterances, 0.3, seed=1)
    assert len(dev) == 3 and len(train) == 7
    assert split_by_speaker(utterances, 0.3, seed=1) == (train, dev)
