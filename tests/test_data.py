"""The audio store (`asr train --preload`) on real recordings: what it reads back, what it
keeps of a recording it could not decode, when it is reused and rebuilt, two runs building it
at once, and DataLoader workers reading it; and `scripts/benchmark_input.py` on it."""

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from common import EXAMPLE, shared_utterances
from torch.utils.data import DataLoader

from asr.audio import AudioError, load_audio
from asr.corpora import Utterance, write_manifest
from asr.data import AudioStore, BucketBatchSampler, SpeechDataset, collate
from asr.text import Vocabulary

ROOT = Path(__file__).resolve().parents[1]
QUANTUM = 1 / 32768  # int16 storage


@pytest.fixture
def recordings(tmp_path) -> list[Utterance]:
    """Real speech in three codecs (an4 Opus, the example WAV, a FLAC copy of it) and a file
    that is not audio."""
    flac = tmp_path / "example.flac"
    sf.write(flac, load_audio(EXAMPLE), 16000, subtype="PCM_16")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio\n" * 100)
    text = "he could not see himself"
    return [*shared_utterances("an4", 2), Utterance(EXAMPLE, text, 2.99),
            Utterance(garbage, text, 2.99), Utterance(flac, text, 2.99)]


def test_the_store_reads_back_what_the_files_hold(tmp_path, recordings):
    store = AudioStore.build(tmp_path / "store", recordings, progress=False)
    assert len(store) == len(recordings)
    for index, utterance in enumerate(recordings):
        if index == 3:
            with pytest.raises(AudioError, match="garbage.wav"):
                store.read(index)
            continue
        expected = load_audio(utterance.audio)
        got = store.read(index)
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.abs(got - expected).max() <= QUANTUM
    # the WAV and its 16-bit FLAC copy are stored exactly
    np.testing.assert_array_equal(store.read(2), load_audio(EXAMPLE))


def test_the_store_decodes_only_what_it_lacks(tmp_path, recordings):
    folder = tmp_path / "store"
    first = AudioStore.build(folder, recordings[:3], progress=False)
    assert len(first.segments) == 1
    written = first.segments[0].stat().st_mtime_ns
    # a subset, and the same recordings again: nothing is decoded
    assert AudioStore.build(folder, recordings[1:3], progress=False).segments == first.segments
    assert len(AudioStore.build(folder, recordings[:3] * 2, progress=False)) == 6
    # a grown corpus: only the new recordings go into a new segment
    grown = AudioStore.build(folder, recordings, progress=False)
    assert len(grown.segments) == 2 and first.segments[0].stat().st_mtime_ns == written
    (new,) = set(grown.segments) - set(first.segments)  # segments are listed by name, not age
    assert new.stat().st_size == 2 * (len(load_audio(EXAMPLE)))  # the FLAC copy
    # a changed recording is decoded again, alone
    flac = recordings[-1].audio
    sf.write(flac, np.zeros(8000, np.float32), 16000)
    os.utime(flac, ns=(written + 10**9, written + 10**9))
    with pytest.raises(FileNotFoundError, match="lacks 1 of the 5 recordings"):
        AudioStore(folder, recordings)
    changed = AudioStore.build(folder, recordings, progress=False)
    assert len(changed.segments) == 3
    assert len(changed.read(len(recordings) - 1)) == 8000
    np.testing.assert_array_equal(changed.read(2), load_audio(EXAMPLE))


def _build_after(barrier, folder: Path, utterances: list[Utterance]) -> None:
    barrier.wait()
    AudioStore.build(folder, utterances, progress=False)


def test_two_runs_may_build_the_same_store_at_once(tmp_path, recordings):
    folder = tmp_path / "store"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    runs = [context.Process(target=_build_after, args=(barrier, folder, recordings))
            for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
    assert [run.exitcode for run in runs] == [0, 0]
    store = AudioStore(folder, recordings)
    assert len(store.segments) == 1 and not list(folder.glob("*partial"))
    np.testing.assert_array_equal(store.read(2), load_audio(EXAMPLE))


def test_workers_read_the_store_as_the_files(tmp_path, recordings):
    readable = [u for i, u in enumerate(recordings) if i != 3]
    store = AudioStore.build(tmp_path / "store", readable, progress=False)
    sampler = BucketBatchSampler([u.duration for u in readable], 7.0, shuffle=False)

    def batches(dataset: SpeechDataset) -> list:
        return list(DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                               num_workers=2, generator=torch.Generator()))

    from_files = batches(SpeechDataset(readable, Vocabulary()))
    from_store = batches(SpeechDataset(readable, Vocabulary(), store=store))
    assert [b.indices for b in from_store] == [b.indices for b in from_files]
    for a, b in zip(from_store, from_files, strict=True):
        assert torch.equal(a.audio_lengths, b.audio_lengths)
        assert (a.audio - b.audio).abs().max() <= QUANTUM
        assert torch.equal(a.targets, b.targets)
    with pytest.raises(ValueError, match="holds 4 recordings, not 5"):
        SpeechDataset(recordings, Vocabulary(), store=store)


def test_benchmark_input_builds_the_store_and_measures(tmp_path, recordings):
    manifest = tmp_path / "train.jsonl"
    write_manifest([u for i, u in enumerate(recordings) if i != 3] * 3, manifest)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark_input.py"), "--seconds", "1",
         "--features", "--", str(manifest), "--batch-seconds", "7", "--speed-perturb",
         "--spec-augment", "--pad-silence", "0.5", "0.3", "--floor-noise-prob", "0.3",
         "--workers", "1", "--threads", "1", "--preload", str(tmp_path / "store")],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "first batch after" in result.stdout
    assert "h of audio a minute (workers 1, preload yes, features on cpu)" in result.stdout
    assert len(list((tmp_path / "store").glob("*.int16"))) == 1  # one segment
