"""scripts/build_lm.py's test-set exclusion: corpus lines equal to a test reference are left
out, nothing else is, and a test set that can't be read is a clear error before any build.
(Building the KenLM binaries themselves needs cmake and Boost, which CI does not install.)"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from common import EXAMPLE, load_script

build_lm = load_script("build_lm")


def _manifest(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"audio": str(EXAMPLE), "text": t, "duration": 3.0})
                            + "\n" for t in texts))
    return path


def test_exclusion_drops_only_whole_test_sentences(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt.gz"
    lines = ["he could not see himself\n", "he could not see himself at all\n",
             "the cat sat on the mat\n", "twenty two apples\n", "he could not see himself\n"]
    with gzip.open(corpus, "wt", encoding="utf-8") as f:
        f.writelines(lines)
    dev = _manifest(tmp_path / "dev.jsonl", ["He could NOT see himself.", "22 apples"])
    exclude = build_lm.reference_sentences([dev])
    assert exclude == {"he could not see himself", "twenty two apples"}
    assert list(build_lm.read_lines(corpus, exclude)) == [
        "he could not see himself at all\n", "the cat sat on the mat\n"]
    assert list(build_lm.read_lines(corpus)) == lines


def test_unreadable_test_set_is_a_clear_error(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lm.bin"
    with pytest.raises(SystemExit) as stop:
        build_lm.main(["--corpus", str(EXAMPLE), "--out", str(out),
                       "--exclude", str(tmp_path / "missing.jsonl")])
    assert "--exclude" in str(stop.value) and "missing.jsonl" in str(stop.value)
    assert not out.exists()
