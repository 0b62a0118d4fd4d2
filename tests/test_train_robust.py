"""Training survives what clusters do to it: SIGTERM to the whole process group, SIGKILL, and
recordings that cannot be read; and a run without a dev set says so. Real runs, real kills."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from common import EXAMPLE

from asr.checkpoint import load_file, load_model
from asr.corpora import Utterance, write_manifest
from asr.model import ModelDims
from asr.train import TrainConfig, train

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--hidden", "16", "--layers", "1", "--warmup-steps", "2", "--batch-seconds", "3.5"]


def _manifest(folder: Path, count: int, extra: tuple[Path, ...] = ()) -> Path:
    """`count` copies of the README's example (2.99 s each: one per 3.5 s batch), then `extra`."""
    example = Utterance(EXAMPLE, "he could not see himself", 2.99)
    path = folder / "train.jsonl"
    write_manifest([example] * count + [Utterance(p, example.text, 2.99) for p in extra], path)
    return path


def _train(*args: str) -> list[str]:
    return [sys.executable, "-m", "asr", "train", *args, *TINY]


def _records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _wait_for(process: subprocess.Popen, ready, log: Path) -> None:
    """Until `ready()`; `log` holds the process's stderr."""
    deadline = time.monotonic() + 120
    while not ready():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "training did not get far enough"
        time.sleep(0.02)


def test_sigterm_to_the_process_group_saves_and_stops(tmp_path):
    run, log = tmp_path / "run", tmp_path / "stderr.txt"
    command = _train(str(_manifest(tmp_path, 8)), "--out", str(run), "--dev-fraction", "0",
                     "--epochs", "1000", "--workers", "2")
    # its own session, as under systemd, SLURM or Kubernetes: the signal reaches every process
    with open(log, "w") as stderr_file:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr_file,
                                   text=True, env=ENV, start_new_session=True)
        # mid-epoch, in the third epoch's workers (the progress bar shows its first batch)
        _wait_for(process, lambda: re.search(r"epoch 3/1000: .*\| 1/8", log.read_text()), log)
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=120)
    stderr = log.read_text()
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr and "killed by signal" not in stderr
    assert f"SIGTERM: saved {run / 'last.pt'}" in stderr
    assert "run again with --resume to continue" in stderr
    try:
        os.killpg(process.pid, 0)
        raise AssertionError("processes of the run are still there")
    except ProcessLookupError:
        pass
    stopped = load_file(run / "last.pt")["progress"]["step"]
    assert stopped > 2 * 8
    result = subprocess.run(_train(str(tmp_path / "train.jsonl"), "--out", str(run), "--resume",
                                   "--workers", "2", "--max-steps", "3"),
                            capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_file(run / "last.pt")["progress"]["step"] == stopped + 3


def test_resume_after_sigkill_logs_every_step_once(tmp_path):
    steps_per_epoch = 24
    config = TrainConfig(train=[str(_manifest(tmp_path, steps_per_epoch))], dev_fraction=0.0,
                         out_dir=str(tmp_path / "run"), dims=ModelDims(hidden=16, layers=1),
                         epochs=3, batch_seconds=3.5, warmup_steps=2, workers=0, log_every=1,
                         save_minutes=1000.0)  # saved at the end of each epoch only
    code = ("import json, sys; from asr.train import TrainConfig, train; "
            "train(TrainConfig.from_dict(json.loads(sys.argv[1])))")
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr_file:
        process = subprocess.Popen([sys.executable, "-c", code, json.dumps(asdict(config))],
                                   stderr=stderr_file, env=ENV)
        _wait_for(process, lambda: any(r["epoch"] == 1 and "loss" in r  # a step of epoch 2
                                       for r in _records(tmp_path / "run")), log)
        process.kill()
        process.wait(timeout=60)
    saved = load_file(tmp_path / "run" / "last.pt")["progress"]["step"]
    assert saved == steps_per_epoch  # the kill came after the save at the end of epoch 1
    assert max(r["step"] for r in _records(tmp_path / "run")) > saved  # and after more logging
    train(config, resume=True)
    records = _records(tmp_path / "run")
    expected = []
    for epoch in range(config.epochs):
        expected += [(step, epoch, "loss") for step in range(epoch * steps_per_epoch + 1,
                                                               (epoch + 1) * steps_per_epoch + 1)]
        expected.append(((epoch + 1) * steps_per_epoch, epoch + 1, "train_loss"))
    assert [(r["step"], r["epoch"], "loss" if "loss" in r else "train_loss")
            for r in records] == expected


@pytest.mark.parametrize("preload", [False, True], ids=["files", "preload"])
def test_unreadable_audio_is_left_out_and_training_goes_on(tmp_path, preload):
    missing = tmp_path / "missing.wav"
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio\n" * 100)
    nan = tmp_path / "nan.wav"  # a sound header, then samples no model can learn from
    sf.write(nan, np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    manifest = _manifest(tmp_path, 6, (missing, garbage, nan))
    result = subprocess.run(_train(str(manifest), "--out", str(tmp_path / "run"),
                                   "--dev-fraction", "0", "--epochs", "2", "--workers", "2",
                                   *(["--preload", str(tmp_path / "store")] if preload else [])),
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    # before the first step: missing and undecodable files, named
    assert "leaving out 2 of 9 training utterances whose audio cannot be read" in result.stderr
    assert f"{missing}: no such file" in result.stderr
    assert f"{garbage}:" in result.stderr
    # during training (the header was fine): left out of its batch, once a warning per epoch
    for epoch in (1, 2):
        assert (f"epoch {epoch}: left out 1 utterance(s) whose audio could not be read, first "
                f"{nan}: contains NaN") in result.stderr
    records = [r for r in _records(tmp_path / "run") if "train_loss" in r]
    assert [(r["epoch"], r["unreadable"]) for r in records] == [(1, 1), (2, 1)]
    assert load_model(tmp_path / "run" / "model.pt").dims.hidden == 16
    assert len(list(tmp_path.glob("store/*.int16"))) == preload


def test_without_a_dev_set_no_dev_wer_is_shown(tmp_path):
    # one recording (no speakers): the 5% speaker split leaves nothing for dev
    result = subprocess.run(_train(str(_manifest(tmp_path, 3)), "--out", str(tmp_path / "run"),
                                   "--epochs", "2", "--workers", "0"),
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no dev set (model.pt will be the latest epoch's)" in result.stderr
    assert "epoch 2: train loss" in result.stderr
    assert "WER" not in result.stderr and "dev loss" not in result.stderr
    records = [r for r in _records(tmp_path / "run") if "train_loss" in r]
    assert [r["epoch"] for r in records] == [1, 2]
    assert not any("dev_wer" in r for r in records)
    assert load_file(tmp_path / "run" / "model.pt")["info"]["epoch"] == 2
