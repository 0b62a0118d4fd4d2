"""How much a streaming transcript depends on where the audio starts.

Each recording goes through the streaming engine as it is, and again delayed by each of
`--delays-ms` (zeros in front): greedily (the partial results), or with `--lm` as the final
results come (beam search with the bundled word LM). For each delay the script
prints the share of characters that change: the character edit distance between the two
transcripts, summed over all recordings, over the characters of the undelayed transcripts.
A model that has learnt where its 30 ms steps fall changes many; the target is at most 5% for
10 and 20 ms.

    python scripts/measure_invariance.py ../shared/data/speech/native_dev.jsonl --limit 100
    python scripts/measure_invariance.py talk.wav --int8 --lm --delays-ms 10 20 1500
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asr.audio import SAMPLE_RATE, load_audio
from asr.corpora import read_corpus
from asr.defaults import LANGUAGE_MODEL, STREAMING_MODEL, STREAMING_MODEL_INT8
from asr.metrics import edit_distance
from streaming.engine import StreamingRecognizer


def recordings(inputs: list[str], limit: int) -> list[Path]:
    """Audio paths: manifests/corpora are expanded, anything else is taken as an audio file."""
    paths: list[Path] = []
    for item in inputs:
        if item.endswith((".jsonl", ".tsv")) or Path(item).is_dir():
            paths += [Path(u.audio) for u in read_corpus(item)]
        else:
            paths.append(Path(item))
    return paths[:limit] if limit else paths


def changed_characters(recognizer: StreamingRecognizer, audio: np.ndarray,
                       delays: list[int]) -> tuple[int, list[int]]:
    """Characters of the undelayed transcript, and the edit distance to it at each delay."""
    reference = recognizer.transcribe(audio).text
    changes = []
    for delay in delays:
        shifted = np.concatenate([np.zeros(delay, np.float32), audio])
        changes.append(edit_distance(reference, recognizer.transcribe(shifted).text))
    return len(reference), changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="audio files, manifests (.jsonl) or corpora")
    parser.add_argument("--model", help="streaming ONNX model (default: the bundled one)")
    parser.add_argument("--int8", action="store_true", help="the bundled int8 model")
    parser.add_argument("--delays-ms", type=float, nargs="+", default=[10, 20, 1500],
                        help="delays to compare against the undelayed input (default: %(default)s)")
    parser.add_argument("--lm", action="store_true",
                        help="final results with the bundled LM (default: greedy)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N recordings")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    args = parser.parse_args()

    model = args.model or (STREAMING_MODEL_INT8 if args.int8 else STREAMING_MODEL)
    recognizer = StreamingRecognizer(model, threads=args.threads,
                                     lm=LANGUAGE_MODEL if args.lm else None)
    delays = [round(ms * SAMPLE_RATE / 1000) for ms in args.delays_ms]
    chars, changed = 0, np.zeros(len(delays), dtype=np.int64)
    identical = np.zeros(len(delays), dtype=np.int64)
    paths = recordings(args.inputs, args.limit)
    for path in tqdm(paths, unit="file", disable=None):
        length, changes = changed_characters(recognizer, load_audio(path), delays)
        chars += length
        changed += changes
        identical += np.asarray(changes) == 0
    decoding = "LM finals" if args.lm else "greedy"
    print(f"{len(paths)} recordings, {chars} transcript characters, model {model}, {decoding}")
    print("| delay | characters changed | identical transcripts |")
    print("|---|---|---|")
    for ms, change, same in zip(args.delays_ms, changed, identical, strict=True):
        print(f"| {ms:g} ms | {100 * change / max(chars, 1):.2f}% | {same}/{len(paths)} |")


if __name__ == "__main__":
    main()
