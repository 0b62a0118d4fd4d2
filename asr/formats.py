"""Output formats of `asr transcribe`: text, json, jsonl, srt, vtt."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from asr.decode import Word
from asr.results import FileResult

FORMATS = ("text", "json", "jsonl", "srt", "vtt")
EXTENSIONS = {"text": "txt"}  # file extension per format where it is not the format's name
CUE_MAX_CHARS = 42
CUE_MAX_SECONDS = 5.0


def cues(words: list[Word]) -> list[tuple[float, float, str]]:
    """Group words into subtitle cues of at most `CUE_MAX_CHARS` characters and
    `CUE_MAX_SECONDS` seconds."""
    groups: list[list[Word]] = []
    for word in words:
        current = groups[-1] if groups else None
        if (current and len(" ".join(w.word for w in current)) + 1 + len(word.word)
                <= CUE_MAX_CHARS and word.end - current[0].start <= CUE_MAX_SECONDS):
            current.append(word)
        else:
            groups.append([word])
    return [(g[0].start, g[-1].end, " ".join(w.word for w in g)) for g in groups]


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(result: FileResult) -> str:
    return "".join(f"{i}\n{_timestamp(a, ',')} --> {_timestamp(b, ',')}\n{text}\n\n"
                   for i, (a, b, text) in enumerate(cues(result.words), 1))


def to_vtt(result: FileResult) -> str:
    return "WEBVTT\n\n" + "".join(f"{_timestamp(a, '.')} --> {_timestamp(b, '.')}\n{text}\n\n"
                                  for a, b, text in cues(result.words))


def printable(text: str) -> str:
    """`text` with the bytes of a file name that are not UTF-8 (which Python keeps as lone
    surrogates) shown as `\\xNN`: safe to print and to write as JSON."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def to_dict(result: FileResult) -> dict:
    """A result as JSON data, its path `printable`."""
    return {**result.to_dict(), "path": printable(result.path)}


def render(result: FileResult, fmt: str, several: bool) -> str:
    """One file's output; `several` prefixes text lines with the path."""
    if fmt == "text":
        return f"{printable(result.path)}\t{result.text}\n" if several else result.text + "\n"
    if fmt == "json":
        return json.dumps(to_dict(result), indent=2) + "\n"
    if fmt == "jsonl":
        return json.dumps(to_dict(result)) + "\n"
    if fmt == "srt":
        return to_srt(result)
    if fmt == "vtt":
        return to_vtt(result)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def output_names(paths: list[str], fmt: str) -> list[str]:
    """A distinct output file name per input: `STEM.EXT`; `NAME.EXT` (the input's whole name)
    for inputs whose stem another input shares; `NAME.N.EXT` (N = 2, 3, ...) for a name taken
    already. EXT is the format's name, `txt` for text."""
    extension = EXTENSIONS.get(fmt, fmt)
    stems = Counter(Path(path).stem for path in paths)
    names: list[str] = []
    taken: set[str] = set()
    for path in map(Path, paths):
        base = path.stem if stems[path.stem] == 1 else path.name
        name, count = f"{base}.{extension}", 1
        while name in taken:
            count += 1
            name = f"{base}.{count}.{extension}"
        names.append(name)
        taken.add(name)
    return names
