"""Benchmark the training input pipeline alone: hours of audio per minute that the data
loader (decoding or `--preload` store, waveform augmentation, batching) delivers, and with
`--features` also the log-mel frontend and SpecAugment on the training device. No model runs:
this is the ceiling the input puts on training throughput (a GPU needs about 150 h a minute
for a 512x4 bidirectional model).

It takes `asr train`'s arguments, so it measures exactly what that training would load:

    python scripts/benchmark_input.py --seconds 60 -- work/corpus/train.jsonl --speed-perturb \\
        --spec-augment --pad-silence 0.5 0.3 --floor-noise-prob 0.3 --workers 2
    python scripts/benchmark_input.py --seconds 60 -- ... --workers 2 --preload work/store

Prints the seconds to the first batch (worker start-up; with --preload, the store is built
before that if it does not exist) and the rate after it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch

from asr.cli import build_parser, train_config
from asr.data import start_workers
from asr.model import CTCModel
from asr.train import (
    Run,
    load_utterances,
    readable,
    training_data,
    training_features,
    training_loader,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="how long to load after the first batch")
    parser.add_argument("--features", action="store_true",
                        help="also compute log-mel frames and SpecAugment on the device")
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="`asr train` arguments after `--` (--out is not needed)")
    args = parser.parse_args()
    train_args = [a for a in args.train_args if a != "--"]
    if not train_args:
        parser.error("give the `asr train` arguments after --")
    with tempfile.TemporaryDirectory() as out:
        config = train_config(build_parser().parse_args(["train", "--out", out, *train_args]))
    if config.threads:
        torch.set_num_threads(config.threads)
    run = Run()
    utterances = readable(run, load_utterances(config.train, config.max_duration), "training")
    model = CTCModel(config.dims).to(run.device)
    started = time.perf_counter()
    dataset, sampler = training_data(config, run, utterances, model)
    dataset.set_epoch(0)
    sampler.set_epoch(0)
    audio_seconds, batches, first = 0.0, 0, None
    for step, batch in enumerate(start_workers(training_loader(config, run, dataset, sampler))):
        if args.features:
            frames, _ = training_features(config, run, model, batch, step)
            if run.device.type == "cuda":
                torch.cuda.synchronize()
        now = time.perf_counter()
        if first is None:
            first = now
            print(f"first batch after {first - started:.1f} s", flush=True)
            continue
        audio_seconds += float(batch.audio_lengths.sum()) / model.features.sample_rate
        batches += 1
        if now - first >= args.seconds:
            break
    elapsed = time.perf_counter() - first if first is not None else 0.0
    if not batches:
        print("the corpus ran out after one batch: nothing to time", file=sys.stderr)
        return 1
    print(f"{batches} batches, {audio_seconds / 3600:.2f} h of audio in {elapsed:.1f} s: "
          f"{audio_seconds / 3600 / (elapsed / 60):.1f} h of audio a minute "
          f"(workers {config.workers}, preload {'yes' if config.preload else 'no'}, "
          f"features {'on ' + run.device.type if args.features else 'off'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
