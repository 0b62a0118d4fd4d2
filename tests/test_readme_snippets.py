"""The README's Python snippets, run as written (on the bundled example instead of the file name
they show), print what the `asr` commands print."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from common import EXAMPLE

from asr.defaults import OFFLINE_ONNX

README = Path(__file__).resolve().parents[1] / "README.md"
CODE = re.compile(r"```python\n(.*?)```", re.S)

pytestmark = pytest.mark.skipif(not OFFLINE_ONNX.is_file(), reason="no bundled offline model")


def section(title: str) -> str:
    """The README text under the `## title` heading, up to the next one."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def python_blocks(title: str) -> list[str]:
    """The python code blocks after "From Python" in a section."""
    part = section(title)
    return CODE.findall(part[part.index("From Python") :])


def run(args: list[str]) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=300,
                            cwd=EXAMPLE.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_transcribing_files_snippets_print_what_the_cli_prints():
    """Each snippet reads "talk.wav"; it prints `asr transcribe --format jsonl`'s line, then
    `asr transcribe`'s."""
    blocks = python_blocks("Transcribing files")
    assert blocks
    expected = (run([sys.executable, "-m", "asr", "transcribe", EXAMPLE.name, "--format",
                     "jsonl"])
                + run([sys.executable, "-m", "asr", "transcribe", EXAMPLE.name]))
    for code in blocks:
        assert "talk.wav" in code
        assert run([sys.executable, "-c", code.replace("talk.wav", EXAMPLE.name)]) == expected
