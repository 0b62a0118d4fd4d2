"""Waveform augmentation: random silence around speech, faint floor noise; silence labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asr.audio import SAMPLE_RATE, load_audio
from asr.augment import FLOOR_NOISE_DBFS, AugmentConfig, WaveformAugmenter
from asr.corpora import read_manifest
from tests.common import EXAMPLE


def test_pad_silence_keeps_the_speech_and_varies_its_start() -> None:
    speech = load_audio(EXAMPLE)
    augment = WaveformAugmenter(AugmentConfig(lead_silence=0.5, trail_silence=0.3))
    starts = set()
    for seed in range(20):
        padded = augment(speech, np.random.default_rng(seed))
        lead = int(np.flatnonzero(padded)[0]) - int(np.flatnonzero(speech)[0])
        assert 0 <= lead <= 0.5 * SAMPLE_RATE
        assert len(padded) - len(speech) - lead <= 0.3 * SAMPLE_RATE
        np.testing.assert_array_equal(padded[lead : lead + len(speech)], speech)
        starts.add(lead % 480)  # the phase against the model's 30 ms steps
    assert len(starts) == 20


def test_floor_noise_is_faint_and_fills_digital_silence() -> None:
    silence = np.zeros(SAMPLE_RATE, np.float32)
    augment = WaveformAugmenter(AugmentConfig(floor_noise_prob=1.0))
    for seed in range(10):
        noisy = augment(silence, np.random.default_rng(seed))
        level = 20 * np.log10(np.sqrt(np.mean(noisy**2)))
        assert FLOOR_NOISE_DBFS[0] - 1 <= level <= FLOOR_NOISE_DBFS[1] + 1
        assert noisy.dtype == np.float32


def test_empty_text_labels_silence_but_punctuation_only_is_dropped(tmp_path: Path) -> None:
    lines = [{"audio": "a.wav", "text": "", "duration": 1.0},
             {"audio": "b.wav", "text": "?!", "duration": 1.0},
             {"audio": "c.wav", "text": "Hello.", "duration": 1.0}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert [(u.audio.name, u.text) for u in read_manifest(manifest)] == [("a.wav", ""),
                                                                           ("c.wav", "hello")]
