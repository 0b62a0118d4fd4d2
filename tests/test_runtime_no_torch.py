"""Recognition needs neither torch nor onnx: checked in a real process after real transcriptions,
and in a fresh virtualenv with the base package only (no extras), on real recordings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from common import EXAMPLE

from asr.corpora import read_corpus
from asr.defaults import OFFLINE_MODEL, OFFLINE_ONNX, SHARED_SPEECH
from asr.formats import to_dict
from asr.transcribe import Recognizer

REPO = Path(__file__).resolve().parents[1]
NATIVE_DEV = SHARED_SPEECH / "native_dev.jsonl"
TRAINING_ONLY = ("torch", "onnx")  # top-level packages the run-time path must not import

pytestmark = pytest.mark.skipif(not OFFLINE_ONNX.is_file(), reason="no bundled offline model")


def run_time_recordings(count: int = 3) -> list[Path]:
    """The example, and a few native dev recordings when the shared data is there."""
    dev = [u.audio for u in read_corpus(NATIVE_DEV)[:count]] if NATIVE_DEV.is_file() else []
    return [EXAMPLE, *dev]


def test_transcribing_imports_neither_torch_nor_onnx(tmp_path):
    """`asr transcribe` (offline, int8, streaming), `asr evaluate` and the Python API, all in one
    process; afterwards no module of torch or onnx is loaded."""
    manifest = tmp_path / "test.jsonl"
    manifest.write_text(json.dumps({"audio": str(EXAMPLE), "text": "he could not see himself"})
                        + "\n")
    script = textwrap.dedent(f"""
        import sys
        from asr.audio import load_audio
        from asr.cli import main
        from asr.transcribe import Recognizer

        example = {str(EXAMPLE)!r}
        for options in ([], ["--int8"], ["--streaming"], ["--streaming", "--lm", "none"]):
            assert main(["transcribe", example, "--format", "jsonl", *options]) == 0
        assert main(["evaluate", {str(manifest)!r}]) == 0
        print(Recognizer().transcribe(load_audio(example)).text)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {TRAINING_ONLY!r})
        print("loaded:", loaded)
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[-1] == "loaded: []"
    assert lines[-2] == "he could not see himself"
    assert "WER 0.00%" in result.stdout


@pytest.mark.slow
def test_fresh_virtualenv_without_torch(tmp_path):
    """`pip install -c constraints.txt` of the base package into a new virtualenv: torch is
    not there, and `asr transcribe --format jsonl` prints what this process's recogniser gives
    for the same real recordings."""
    source = tmp_path / "src"  # a copy, so that building leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy(REPO / name, source / name)
    for package in ("asr", "streaming", "export"):
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, asr = venv / "bin" / "python", venv / "bin" / "asr"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-"
                              "check", "-c", str(source / "constraints.txt"), str(source)],
                             capture_output=True, text=True, timeout=600)
    if install.returncode and "Could not find a version" in install.stderr:
        pytest.skip("no package index reachable for the base dependencies")
    assert install.returncode == 0, install.stderr[-2000:]
    assert subprocess.run([str(python), "-c", "import torch"], capture_output=True,
                          timeout=60).returncode != 0, "torch got installed with the base package"

    paths = [str(p) for p in run_time_recordings()]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run([str(asr), "transcribe", "--format", "jsonl", *paths],
                            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    expected = [to_dict(item) for item in Recognizer().transcribe_files(paths)]
    assert rows == expected
    checkpoint = subprocess.run([str(asr), "transcribe", str(EXAMPLE), "--model",
                                 str(OFFLINE_MODEL)], capture_output=True, text=True,
                                timeout=300, env=env, cwd=tmp_path)
    assert checkpoint.returncode == 2 and checkpoint.stdout == ""
    assert "lstm-asr[train]" in checkpoint.stderr and len(checkpoint.stderr.splitlines()) == 1
