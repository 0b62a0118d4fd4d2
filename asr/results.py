"""Per-file results shared by the offline and streaming recognisers (no torch import)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from asr.audio import MIN_SECONDS, AudioError, AudioStream
from asr.decode import Transcript, Word


@dataclass
class FileResult:
    path: str  # as given
    text: str
    duration: float
    words: list[Word] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # problems it was read despite

    def to_dict(self) -> dict:
        return {"path": self.path, "text": self.text, "duration": round(self.duration, 3),
                "words": [_word_dict(w) for w in self.words]}


def _word_dict(word: Word) -> dict:
    """A word as JSON data: word, start, end, and conf where the decoder gave one."""
    data = {"word": word.word, "start": word.start, "end": word.end}
    if word.conf is not None:
        data["conf"] = word.conf
    return data


@dataclass
class FileError:
    path: str
    message: str


GROUP_SECONDS = 60.0  # audio (by the headers) transcribed per group of files
GROUP_FILES = 16  # and at most this many files per group


def transcribe_files(transcribe_many: Callable[[list[AudioStream]], list[Transcript]],
                     paths: Iterable[str],
                     on_file: Callable[[FileResult | FileError], None] | None = None,
                     ) -> Iterator[FileResult | FileError]:
    """Transcribe files a group at a time (up to `GROUP_FILES` files and `GROUP_SECONDS` of
    audio, so that results come steadily), each streamed from disk in blocks (never whole),
    yielding results in input order and passing each to `on_file` as it is ready. A file that
    can't be read yields a `FileError` and the others go on; one read with a problem
    (truncated, too short to hold a word) yields its result with the problem in `warnings`."""
    for group in _groups(paths):
        streams = [item for _, item in group if isinstance(item, AudioStream)]
        transcripts = iter(transcribe_many(streams))
        for path, item in group:
            result = item if isinstance(item, FileError) else _result(path, item,
                                                                      next(transcripts))
            if on_file:
                on_file(result)
            yield result


def header_seconds(paths: Iterable[str]) -> float:
    """Seconds of audio the files' headers announce (unreadable ones and those of unknown
    length count 0): what a progress bar counts towards."""
    return sum(item.header_seconds or 0.0 for item in map(_open, paths)
               if isinstance(item, AudioStream))


def _groups(paths: Iterable[str]) -> Iterator[list[tuple[str, AudioStream | FileError]]]:
    """The files, opened (headers only), in groups of at most `GROUP_FILES` files and
    `GROUP_SECONDS` of audio; a file of unknown length makes a group alone."""
    group: list[tuple[str, AudioStream | FileError]] = []
    seconds = 0.0
    for path in paths:
        item = _open(path)
        length = (item.header_seconds if isinstance(item, AudioStream) else 0.0)
        length = GROUP_SECONDS if length is None else length
        if group and (len(group) == GROUP_FILES or seconds + length > GROUP_SECONDS):
            yield group
            group, seconds = [], 0.0
        group.append((path, item))
        seconds += length
    if group:
        yield group


def _open(path: str) -> AudioStream | FileError:
    try:
        return AudioStream(path)
    except AudioError as error:
        return FileError(path, str(error))


def _result(path: str, stream: AudioStream, transcript: Transcript) -> FileResult | FileError:
    """What became of a streamed file: its transcript, or the error that stopped reading."""
    if stream.error:
        return FileError(path, stream.error)
    warnings = list(stream.warnings)
    if stream.seconds < MIN_SECONDS:
        warnings.append(f"{path}: {stream.seconds:.4f} s of audio is too short to hold a word "
                        f"(under {MIN_SECONDS:g} s); transcript left empty")
    return FileResult(path, transcript.text, stream.seconds, transcript.words, warnings)
