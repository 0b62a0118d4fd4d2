"""scripts/make_corpus.py: manifests, resumability, reproducibility and augmentation."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import SAMPLE_RATE, load_audio
from asr.corpora import Utterance, read_manifest, split_by_speaker
from asr.text import normalize_text

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_corpus.py"
PROMPTS = ["The cat sat on the mat.", "Hello world, this is test number 42.",
           "\u201cQuoted\u201d text -- with punctuation!", "A small sentence here."]


def _load_script():
    spec = importlib.util.spec_from_file_location("make_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_corpus"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


mc = _load_script()
AVAILABLE = mc.available_voices(mc.VOICES, None)
needs_tts = pytest.mark.skipif(not AVAILABLE, reason="no flite, festival or espeak-ng installed")


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A prompts file and a real-speech manifest of two speakers (with a dataset field)."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    real = tmp_path / "real"
    (real / "audio").mkdir(parents=True)
    lines = []
    for i, (speaker, seconds) in enumerate([("ann", 1.0), ("bob", 2.0), ("bob", 1.5)]):
        sf.write(real / "audio" / f"{i}.wav", np.zeros(int(seconds * SAMPLE_RATE)), SAMPLE_RATE)
        lines.append(json.dumps({"audio": f"audio/{i}.wav", "text": "yes", "duration": seconds,
                                 "speaker": speaker, "dataset": f"set-{speaker}"}))
    (real / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return prompts, real / "manifest.jsonl"


def _run(out: Path, prompts: Path, *extra: str) -> dict:
    mc.main(["--out", str(out), "--prompts", str(prompts), "--limit", "4", *extra])
    return json.loads((out / "summary.json").read_text())


@needs_tts
def test_corpus_manifests_resumable_and_reproducible(tmp_path: Path, inputs) -> None:
    prompts, real = inputs
    out = tmp_path / "corpus"
    summary = _run(out, prompts, "--real", str(real), "--dev-fraction", "0.4")
    assert summary["this_run"]["rendered"] == 4

    synthetic = read_manifest(out / "synthetic.jsonl")
    assert [u.text for u in synthetic] == [normalize_text(p) for p in PROMPTS]
    voices = {v.name for v in AVAILABLE}
    for utterance in synthetic:
        assert utterance.speaker in voices
        assert utterance.audio.parent == out / "audio" / utterance.speaker
        assert utterance.duration > 0.3
        audio = load_audio(utterance.audio)
        assert abs(audio.size / SAMPLE_RATE - utterance.duration) < 0.05
        assert np.abs(audio).max() > 0.01
    real_train, real_dev = split_by_speaker(read_manifest(real), 0.4, 0)
    assert read_manifest(out / "train.jsonl") == real_train + synthetic
    assert read_manifest(out / "dev.jsonl") == real_dev and real_dev
    assert summary["synthetic"]["utterances"] == 4
    assert sum(s["utterances"] for s in summary["real_dev"]["datasets"].values()) == len(real_dev)
    assert set(summary["real_train"]["datasets"]) <= {"set-ann", "set-bob"}

    manifests = {name: (out / name).read_bytes()
                 for name in ("synthetic.jsonl", "train.jsonl", "dev.jsonl")}
    stamps = {u.audio: u.audio.stat().st_mtime_ns for u in synthetic}
    again = _run(out, prompts, "--real", str(real), "--dev-fraction", "0.4")
    assert again["this_run"] == {"reused": 4, "seconds": again["this_run"]["seconds"], "jobs": 1}
    assert {name: (out / name).read_bytes() for name in manifests} == manifests
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert not (out / mc.TEMP_DIR).exists()

    # a fresh folder with the same arguments gives the same corpus (same voices, same texts)
    fresh = tmp_path / "fresh"
    _run(fresh, prompts, "--real", str(real), "--dev-fraction", "0.4")
    assert (fresh / "synthetic.jsonl").read_bytes() == manifests["synthetic.jsonl"]


@needs_tts
def test_noise_and_reverb_options_change_the_audio(tmp_path: Path, inputs) -> None:
    prompts, _ = inputs
    clean_dir, noisy_dir = tmp_path / "clean", tmp_path / "noisy"
    _run(clean_dir, prompts, "--no-real", "--noise-prob", "0", "--reverb-prob", "0")
    _run(noisy_dir, prompts, "--no-real", "--noise-prob", "1", "--snr-db", "5",
         "--reverb-prob", "1")
    clean = read_manifest(clean_dir / "synthetic.jsonl")
    noisy = read_manifest(noisy_dir / "synthetic.jsonl")
    assert [u.speaker for u in clean] == [u.speaker for u in noisy]  # voices do not depend on it
    for a, b in zip(clean, noisy, strict=True):
        x, y = load_audio(a.audio), load_audio(b.audio)
        x, y = x / np.abs(x).max(), y / np.abs(y).max()
        quietest = min(np.sort(np.abs(x))[x.size // 10], 1.0)
        assert np.sort(np.abs(y))[y.size // 10] > quietest  # noise fills the pauses


def test_reverberation_keeps_length_and_level_and_adds_a_tail() -> None:
    rng = np.random.default_rng(0)
    audio = np.zeros(SAMPLE_RATE, dtype=np.float32)
    audio[1000:1100] = rng.standard_normal(100)
    wet = mc.reverberate(audio, 0.5, np.random.default_rng(1))
    assert wet.shape == audio.shape and wet.dtype == np.float32
    assert np.isclose(np.sqrt(np.mean(wet**2)), np.sqrt(np.mean(audio**2)), rtol=1e-3)
    assert np.abs(wet[3000:5000]).max() > 1e-3  # energy after the burst has ended


def test_plans_are_seeded_per_item() -> None:
    settings = mc.Settings(Path("/tmp/x"), ("one two", "three four"), tuple(mc.VOICES), 7,
                           (0.8, 1.3), 4.0, 0.3, (0.15, 0.8), 0.4, (5.0, 10.0))
    assert mc.plan_item(settings, 1) == mc.plan_item(settings, 1)
    other = mc.Settings(**{**settings.__dict__, "seed": 8})
    plans = [mc.plan_item(s, i) for s in (settings, other) for i in range(2)]
    assert len({(p.voice, p.stretch) for p in plans}) == 4
    utterance = Utterance(plans[0].path, plans[0].text, 1.0, plans[0].voice.name)
    assert utterance.audio.name == "0000000.opus"


def test_missing_engines_are_skipped_and_none_is_an_error(tmp_path: Path, capsys) -> None:
    assert mc.available_voices(mc.VOICES, tmp_path) == []
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no speech synthesiser"):
        mc.main(["--out", str(tmp_path / "out"), "--tts-root", str(tmp_path)])
