"""Training on real utterances: it learns, it resumes exactly, and it runs under torchrun/DDP."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from common import shared_utterances

from asr.augment import AugmentConfig
from asr.checkpoint import load_file, load_model
from asr.corpora import write_manifest
from asr.evaluate import evaluate
from asr.model import ModelDims
from asr.train import TrainConfig, train
from asr.transcribe import Recognizer


@pytest.fixture(scope="module")
def few_utterances(tmp_path_factory):
    """Six real utterances with different sentences, as a manifest."""
    seen, picked = set(), []
    for u in shared_utterances("cathy", 40, max_duration=4.0):
        if u.text not in seen:
            seen.add(u.text)
            picked.append(u)
    path = tmp_path_factory.mktemp("data") / "few.jsonl"
    write_manifest(picked[:6], path)
    return path, picked[:6]


def test_training_learns_a_few_utterances(tmp_path, few_utterances):
    manifest, utterances = few_utterances
    utterances = utterances[:4]
    write_manifest(utterances, tmp_path / "four.jsonl")
    data = [str(tmp_path / "four.jsonl")]
    # random leading silence: recognition runs every phase of the 30 ms steps (asr.model)
    config = TrainConfig(train=data, dev=data, out_dir=str(tmp_path / "run"),
                         dims=ModelDims(hidden=128, layers=1, dropout=0.0), epochs=200,
                         batch_seconds=30.0, lr=1e-2, warmup_steps=10, workers=0, log_every=5,
                         augment=AugmentConfig(lead_silence=0.03))
    train(config)
    tmp_path = tmp_path / "run"
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < 0.1 * losses[0]
    report = evaluate(Recognizer(tmp_path / "model.pt", lm=None), utterances)
    assert report.rates.cer < 0.08, report.pairs


def small_config(manifest, out_dir, **overrides) -> TrainConfig:
    augment = AugmentConfig(speeds=(0.9, 1.0, 1.1), noise_prob=0.5, freq_masks=2, time_masks=2)
    settings = dict(train=[str(manifest)], dev=[str(manifest)], out_dir=str(out_dir),
                    dims=ModelDims(hidden=32, layers=2), augment=augment, epochs=2,
                    batch_seconds=7.0, warmup_steps=2, workers=0, stats_utterances=3)
    return TrainConfig(**{**settings, **overrides})


def test_resume_continues_exactly(tmp_path, few_utterances):
    manifest, _ = few_utterances
    straight = train(small_config(manifest, tmp_path / "a"))
    first = train(small_config(manifest, tmp_path / "b", max_steps=2))
    assert first.epoch == 0 and first.step == 2  # stopped mid-epoch
    resumed = train(small_config(manifest, tmp_path / "b"), resume=True)
    assert resumed.step == straight.step
    a = load_file(tmp_path / "a" / "last.pt")["model"]["state_dict"]
    b = load_file(tmp_path / "b" / "last.pt")["model"]["state_dict"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_checkpoint_is_a_complete_model(tmp_path, few_utterances):
    manifest, _ = few_utterances
    train(small_config(manifest, tmp_path, epochs=1))
    model = load_model(tmp_path / "model.pt")
    assert model.dims == ModelDims(hidden=32, layers=2)
    assert not torch.equal(model.feature_mean, torch.zeros(80))  # statistics travel with it
    assert model.vocab.tokens[0] == "<blank>"


def test_intermediate_ctc_trains_the_same_model_and_checks_its_weight(tmp_path, few_utterances):
    manifest, _ = few_utterances
    train(small_config(manifest, tmp_path / "run", epochs=1, intermediate_ctc=0.3))
    assert load_model(tmp_path / "run" / "model.pt").dims == ModelDims(hidden=32, layers=2)
    with pytest.raises(ValueError, match="between 0 and 1, not 1.5"):
        train(small_config(manifest, tmp_path / "bad", intermediate_ctc=1.5))
    with pytest.raises(ValueError, match="needs at least 2 LSTM layers"):
        train(small_config(manifest, tmp_path / "bad", intermediate_ctc=0.3,
                           dims=ModelDims(hidden=32, layers=1)))


def test_init_with_more_units_widens_the_model(tmp_path, few_utterances, capsys):
    manifest, _ = few_utterances
    train(small_config(manifest, tmp_path / "narrow", epochs=1))
    narrow = tmp_path / "narrow" / "model.pt"
    train(small_config(manifest, tmp_path / "wide", init=str(narrow), epochs=1,
                       dims=ModelDims(hidden=40, layers=2)))
    assert "32 -> 40 units per direction" in capsys.readouterr().err
    assert load_model(tmp_path / "wide" / "model.pt").dims == ModelDims(hidden=40, layers=2)
    with pytest.raises(ValueError, match="only hidden and lookahead may grow"):
        train(small_config(manifest, tmp_path / "deeper", init=str(narrow),
                           dims=ModelDims(hidden=32, layers=3)))
    train(small_config(manifest, tmp_path / "dropout", init=str(narrow), epochs=1,
                       dims=ModelDims(hidden=40, layers=2, dropout=0.3)))
    assert "dropout 0.1 -> 0.3" in capsys.readouterr().err
    assert load_model(tmp_path / "dropout" / "model.pt").dims.dropout == 0.3


def test_init_with_a_longer_lookahead_reads_further_ahead(tmp_path, few_utterances, capsys):
    manifest, _ = few_utterances
    dims = ModelDims(hidden=32, layers=2, bidirectional=False)
    train(small_config(manifest, tmp_path / "causal", epochs=1, dims=dims))
    train(small_config(manifest, tmp_path / "ahead", init=str(tmp_path / "causal" / "model.pt"),
                       epochs=1, dims=replace(dims, lookahead=4)))
    assert "look-ahead 0 -> 4 frames" in capsys.readouterr().err
    assert load_model(tmp_path / "ahead" / "model.pt").dims.lookahead == 4


def test_torchrun_ddp_two_processes_on_cpu(tmp_path, few_utterances):
    manifest, _ = few_utterances
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "asr", "train", str(manifest), "--dev",
               str(manifest), "--out", str(tmp_path), "--hidden", "32", "--layers", "1",
               "--epochs", "2", "--batch-seconds", "7", "--workers", "0", "--warmup-steps", "2"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stderr
    assert (tmp_path / "model.pt").is_file()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "dev_wer" in r] == [1, 2]  # rank 0 alone logs
