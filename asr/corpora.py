"""Corpus readers: JSON-lines manifests, LibriSpeech trees and Common Voice TSV files."""

from __future__ import annotations

import csv
import json
import os
import random
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from asr.text import normalize_text


@dataclass(frozen=True)
class Utterance:
    """One recording and its transcript."""

    audio: Path  # absolute path to the audio file
    text: str  # normalised with asr.text.normalize_text; "" for silence or noise only
    duration: float  # seconds
    speaker: str = ""


class CorpusError(ValueError):
    """A corpus file that cannot be read; the message names the file (and line)."""


def _absolute(path: Path) -> Path:
    """Absolute path with `..` removed, keeping symlinks (a link's name may carry the format)."""
    return Path(os.path.abspath(path))


def _audio_duration(path: Path, where: str) -> float:
    """Duration of an audio file in seconds from its header; `where` prefixes errors."""
    if not path.is_file():
        raise CorpusError(f"{where}: audio file not found: {path}")
    try:
        return sf.info(path).duration
    except (sf.LibsndfileError, RuntimeError) as error:
        raise CorpusError(f"{where}: cannot read audio file {path}: {error}") from error


def _parse_manifest_line(line: str, base: Path, where: str) -> Utterance | None:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as error:
        raise CorpusError(f"{where}: not valid JSON ({error})") from None
    if not isinstance(entry, dict):
        raise CorpusError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    for key in ("audio", "text"):
        if key not in entry:
            raise CorpusError(f"{where}: missing {key!r}")
    audio, text, duration = entry["audio"], entry["text"], entry.get("duration")
    speaker = entry.get("speaker", "")
    if not isinstance(audio, str) or not audio:
        raise CorpusError(f"{where}: 'audio' must be a non-empty string")
    if not isinstance(text, str):
        raise CorpusError(f"{where}: 'text' must be a string")
    if duration is not None and (isinstance(duration, bool)
                                 or not isinstance(duration, (int, float)) or duration <= 0):
        raise CorpusError(f"{where}: 'duration' must be a positive number of seconds")
    if not isinstance(speaker, str):
        raise CorpusError(f"{where}: 'speaker' must be a string")
    normalised = normalize_text(text)
    if text.strip() and not normalised:
        return None  # nothing transcribable left (punctuation only); "" labels silence
    path = _absolute(base / audio)
    if duration is None:
        duration = _audio_duration(path, where)
    return Utterance(path, normalised, float(duration), speaker)


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read a JSON-lines manifest; relative audio paths are relative to its folder.

    Each line holds `audio`, `text`, and optionally `duration` (seconds; read from the audio
    file's header when missing) and `speaker`; other keys are ignored, blank lines skipped.
    Raises `CorpusError` naming the file and line of a bad entry.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CorpusError(f"{path}: cannot read manifest ({error})") from error
    base = _absolute(path.parent)
    utterances = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            utterance = _parse_manifest_line(line, base, f"{path}:{number}")
            if utterance is not None:
                utterances.append(utterance)
    return utterances


def write_manifest(utterances: Iterable[Utterance], path: str | Path,
                   extras: Iterable[dict] | None = None) -> None:
    """Write a JSON-lines manifest atomically, creating its folder.

    Audio paths under the manifest's folder are written relative to it, others absolute.
    `extras` (one dict per utterance) adds keys to each line, or overrides its values.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = _absolute(path.parent)
    utterances = list(utterances)
    lines = []
    for utterance, extra in zip(utterances, extras or [{}] * len(utterances), strict=True):
        audio = _absolute(utterance.audio)
        relative = audio.relative_to(base) if audio.is_relative_to(base) else audio
        entry = {"audio": relative.as_posix(), "text": utterance.text,
                 "duration": utterance.duration, "speaker": utterance.speaker, **extra}
        lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.writelines(lines)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_librispeech(root: str | Path) -> list[Utterance]:
    """Read a LibriSpeech tree (the dataset root or one split) from its `*.trans.txt` files.

    Layout: `<speaker>/<chapter>/<speaker>-<chapter>.trans.txt` with lines `ID TEXT`, audio in
    `ID.flac` beside it. The speaker is the `<speaker>` folder's name.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: not a directory")
    transcripts = sorted(root.rglob("*.trans.txt"))
    if not transcripts:
        raise CorpusError(f"{root}: no LibriSpeech *.trans.txt files found under it")
    utterances = []
    for transcript in transcripts:
        folder = _absolute(transcript.parent)
        try:
            lines = transcript.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise CorpusError(f"{transcript}: cannot read transcript ({error})") from error
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            utterance_id, _, raw_text = line.strip().partition(" ")
            text = normalize_text(raw_text)
            if not text:
                continue
            audio = folder / f"{utterance_id}.flac"
            duration = _audio_duration(audio, f"{transcript}:{number}")
            utterances.append(Utterance(audio, text, duration, folder.parent.name))
    return utterances


def read_common_voice(tsv_path: str | Path) -> list[Utterance]:
    """Read a Common Voice TSV (`train.tsv`, `dev.tsv`, ...) whose clips are in `clips/` beside it.

    Needs the columns `path` and `sentence`; `client_id`, when present, is the speaker.
    """
    tsv_path = Path(tsv_path)
    clips = _absolute(tsv_path.parent) / "clips"
    try:
        with tsv_path.open(encoding="utf-8", newline="") as file:
            reader = csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = {"path", "sentence"} - set(reader.fieldnames or ())
            if missing:
                raise CorpusError(f"{tsv_path}:1: missing column(s) {', '.join(sorted(missing))}")
            utterances = []
            for row in reader:
                where = f"{tsv_path}:{reader.line_num}"
                clip, sentence = row["path"], row["sentence"]
                if clip is None or sentence is None:
                    raise CorpusError(f"{where}: too few columns")
                text = normalize_text(sentence)
                if not text:
                    continue
                audio = clips / clip
                duration = _audio_duration(audio, where)
                utterances.append(Utterance(audio, text, duration, row.get("client_id") or ""))
    except (OSError, UnicodeDecodeError) as error:
        raise CorpusError(f"{tsv_path}: cannot read ({error})") from error
    return utterances


def read_corpus(path: str | Path) -> list[Utterance]:
    """Read a `.jsonl`/`.json` manifest, a Common Voice `.tsv` or a LibriSpeech directory."""
    path = Path(path)
    if path.is_dir():
        return read_librispeech(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return read_manifest(path)
    if suffix == ".tsv":
        return read_common_voice(path)
    raise CorpusError(f"{path}: unknown corpus kind; expected a JSON-lines manifest (.jsonl or "
                      ".json), a Common Voice .tsv file, or a LibriSpeech directory")


def split_by_speaker(utterances: Iterable[Utterance], dev_fraction: float,
                     seed: int = 0) -> tuple[list[Utterance], list[Utterance]]:
    """Split into (train, dev) with whole speakers in dev holding ~`dev_fraction` of the duration.

    Speakers are visited in a seeded random order and each joins dev when that brings dev's
    duration closer to the target. Utterances without a speaker count as their own speaker.
    Both lists keep the input order.
    """
    if not 0 <= dev_fraction < 1:
        raise ValueError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    utterances = list(utterances)

    def group(utterance: Utterance) -> tuple[str, str]:
        return utterance.speaker, "" if utterance.speaker else str(utterance.audio)

    durations: dict[tuple[str, str], float] = {}
    for utterance in utterances:
        key = group(utterance)
        durations[key] = durations.get(key, 0.0) + utterance.duration
    target = dev_fraction * sum(durations.values())
    order = sorted(durations)
    random.Random(seed).shuffle(order)
    dev_groups, dev_duration = set(), 0.0
    for key in order:
        if abs(dev_duration + durations[key] - target) < abs(dev_duration - target):
            dev_groups.add(key)
            dev_duration += durations[key]
    train = [u for u in utterances if group(u) not in dev_groups]
    dev = [u for u in utterances if group(u) in dev_groups]
    return train, dev


def total_hours(utterances: Iterable[Utterance]) -> float:
    """Total duration in hours."""
    return sum(u.duration for u in utterances) / 3600
