"""Checkpoints from elsewhere: a crafted pickle never runs, damage and NaN weights are refused,
and every bad file is a one-line error naming it, in the API and the CLI."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from common import EXAMPLE

from asr.checkpoint import (
    PARTS_FORMAT,
    ModelFileError,
    load_file,
    load_model,
    model_payload,
    save_model,
)
from asr.defaults import OFFLINE_MODEL
from asr.model import CTCModel, ModelDims

TINY = ModelDims(hidden=16, layers=1)


class _RunsCommand:
    """Unpickles as `os.system(command)`: what a crafted checkpoint does."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _crafted(path: Path, marker: Path) -> Path:
    """A torch file whose unpickling (without weights_only) creates `marker`; checks it does."""
    torch.save({"model": _RunsCommand(f"touch {marker}"), "optimizer": {}}, path)
    torch.load(path, weights_only=False)
    assert marker.is_file(), "the crafted file should run its command when loaded unsafely"
    marker.unlink()
    return path


def _asr(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "asr", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def _one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


def test_a_crafted_last_pt_does_not_run_on_resume(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "run").mkdir()
    _crafted(tmp_path / "run" / "last.pt", marker)
    result = _asr("train", str(EXAMPLE), "--out", str(tmp_path / "run"), "--resume")
    _one_line_error(result, "asr train: error:", "last.pt", "refused", "posix.system")
    assert not marker.exists()


def test_crafted_parts_do_not_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = _crafted(tmp_path / "payload.pt", marker).read_bytes()
    # an index in the form written before indexes were JSON, itself a crafted pickle
    _crafted(tmp_path / "old-index.pt", marker)
    # a JSON index whose (correctly hashed) part is the crafted pickle
    (tmp_path / "model.pt.part-x-0").write_bytes(payload)
    (tmp_path / "model.pt").write_text(json.dumps({
        "format": PARTS_FORMAT, "parts": ["model.pt.part-x-0"], "bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest()}))
    for path in (tmp_path / "old-index.pt", tmp_path / "model.pt"):
        with pytest.raises(ModelFileError, match="refused"):
            load_model(path)
    assert not marker.exists()
    (tmp_path / "model.pt").write_text(json.dumps({
        "format": PARTS_FORMAT, "parts": ["../payload.pt"], "bytes": 1, "sha256": ""}))
    with pytest.raises(ModelFileError, match="bad part names"):
        load_model(tmp_path / "model.pt")


def test_the_bundled_model_carries_its_digest_and_loads_safely():
    assert "content_sha256" in torch.load(OFFLINE_MODEL, weights_only=True)
    assert load_model(OFFLINE_MODEL).dims.hidden == 256


def test_flipped_bytes_in_the_bundled_model_are_refused(tmp_path):
    data = bytearray(OFFLINE_MODEL.read_bytes())
    middle = len(data) // 2  # among the weights
    data[middle : middle + 65536] = bytes(b ^ 0xFF for b in data[middle : middle + 65536])
    (tmp_path / "flipped.pt").write_bytes(data)
    result = _asr("transcribe", "--model", str(tmp_path / "flipped.pt"), str(EXAMPLE))
    _one_line_error(result, "flipped.pt", "damaged")
    assert result.stdout == ""


def test_non_finite_weights_are_refused_with_or_without_a_digest(tmp_path):
    model = CTCModel(TINY)
    with torch.no_grad():
        model.output.weight[3, :2] = torch.tensor([float("nan"), float("inf")])
    save_model(model, tmp_path / "digest.pt")
    torch.save(model_payload(model), tmp_path / "plain.pt")  # as files before digests were
    for name in ("digest.pt", "plain.pt"):
        with pytest.raises(ModelFileError, match=rf"{name}: weight 'output.weight' holds 2 NaN"):
            load_model(tmp_path / name)


def test_digest_catches_a_changed_tensor(tmp_path):
    save_model(CTCModel(TINY), tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    payload["state_dict"]["output.bias"][0] += 1.0
    torch.save(payload, tmp_path / "model.pt")
    with pytest.raises(ModelFileError, match="does not match the SHA-256"):
        load_file(tmp_path / "model.pt")


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_empty_or_truncated_checkpoints_are_one_line_errors(tmp_path, damage):
    save_model(CTCModel(TINY), tmp_path / "model.pt")
    data = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "model.pt").write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    words = ["empty"] if damage == "empty" else ["truncated"]
    with pytest.raises(ModelFileError, match=words[0]):
        load_model(tmp_path / "model.pt")
    (tmp_path / "run").mkdir()
    (tmp_path / "model.pt").rename(tmp_path / "run" / "last.pt")
    result = _asr("train", str(EXAMPLE), "--out", str(tmp_path / "run"), "--resume")
    _one_line_error(result, "asr train: error:", "last.pt", *words)


def test_a_model_file_is_not_a_training_checkpoint(tmp_path):
    save_model(CTCModel(TINY), tmp_path / "last.pt")
    result = _asr("train", str(EXAMPLE), "--out", str(tmp_path), "--resume")
    _one_line_error(result, "last.pt", "not a training checkpoint", "--init")
