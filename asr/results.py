"""Per-file results shared by the offline and streaming recognisers (no torch import)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from asr.audio import SAMPLE_RATE, AudioError, load_audio
from asr.decode import Transcript, Word


@dataclass
class FileResult:
    path: str  # as given
    text: str
    duration: float
    words: list[Word] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"path": self.path, "text": self.text, "duration": round(self.duration, 3),
                "words": [{"word": w.word, "start": w.start, "end": w.end} for w in self.words]}


@dataclass
class FileError:
    path: str
    message: str


def transcribe_files(transcribe_many: Callable[[list[np.ndarray]], list[Transcript]],
                     paths: Iterable[str], files_per_batch: int = 16,
                     on_file: Callable[[], None] | None = None,
                     ) -> Iterator[FileResult | FileError]:
    """Load and transcribe files a group at a time, yielding results in input order; a file
    that can't be read yields a `FileError` and the others go on."""
    paths = list(paths)
    for first in range(0, len(paths), files_per_batch):
        group = paths[first : first + files_per_batch]
        loaded: dict[str, np.ndarray | FileError] = {}
        for path in group:
            try:
                loaded[path] = load_audio(path)
            except AudioError as error:
                loaded[path] = FileError(path, str(error))
        good = [p for p in group if not isinstance(loaded[p], FileError)]
        transcripts = dict(zip(good, transcribe_many([loaded[p] for p in good]), strict=True))
        for path in group:
            item = loaded[path]
            if isinstance(item, FileError):
                yield item
            else:
                transcript = transcripts[path]
                yield FileResult(path, transcript.text, len(item) / SAMPLE_RATE,
                                 transcript.words)
            if on_file:
                on_file()
