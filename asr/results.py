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
                "words": [{"word": w.word, "start": w.start, "end": w.end} for w in self.words]}


@dataclass
class FileError:
    path: str
    message: str


def transcribe_files(transcribe_many: Callable[[list[AudioStream]], list[Transcript]],
                     paths: Iterable[str], files_per_batch: int = 16,
                     on_file: Callable[[], None] | None = None,
                     ) -> Iterator[FileResult | FileError]:
    """Transcribe files a group at a time, each streamed from disk in blocks (never whole),
    yielding results in input order. A file that can't be read yields a `FileError` and the
    others go on; one read with a problem (truncated, too short to hold a word) yields its
    result with the problem in `warnings`."""
    paths = list(paths)
    for first in range(0, len(paths), files_per_batch):
        group = paths[first : first + files_per_batch]
        opened = [_open(path) for path in group]
        streams = [item for item in opened if isinstance(item, AudioStream)]
        transcripts = iter(transcribe_many(streams))
        for path, item in zip(group, opened, strict=True):
            yield item if isinstance(item, FileError) else _result(path, item, next(transcripts))
            if on_file:
                on_file()


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
