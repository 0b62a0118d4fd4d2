"""Split the shared speech manifest into train and dev manifests by speaker.

    python scripts/split_shared_speech.py --out work/data

Whole speakers are held out (never single utterances), so dev WER measures speakers the
model has not heard. The split depends only on --seed and --dev-fraction.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from asr.corpora import read_manifest, split_by_speaker, total_hours, write_manifest
from asr.defaults import SHARED_SPEECH


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=SHARED_SPEECH / "manifest.jsonl")
    parser.add_argument("--out", type=Path, default=Path("work/data"),
                        help="folder for train.jsonl and dev.jsonl (default: %(default)s)")
    parser.add_argument("--dev-fraction", type=float, default=0.06,
                        help="share of the audio duration held out (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    utterances = read_manifest(args.manifest)
    train, dev = split_by_speaker(utterances, args.dev_fraction, args.seed)
    write_manifest(train, args.out / "train.jsonl")
    write_manifest(dev, args.out / "dev.jsonl")
    for name, part in (("train", train), ("dev", dev)):
        speakers = len({u.speaker for u in part})
        print(f"{name}: {len(part)} utterances, {total_hours(part):.2f} h, {speakers} speakers")
    print("dev speakers by corpus:", dict(Counter(u.speaker.split("_")[0] for u in dev)))


if __name__ == "__main__":
    main()
