"""Greedy WER/CER of exported offline ONNX models on a corpus, one thread, one utterance a run
(the vocabulary and frame length come from each model's ONNX metadata).

    OMP_NUM_THREADS=1 python scripts/eval_offline_onnx.py DIR/model.onnx DIR/model.int8.onnx \\
        --corpus ../shared/data/speech/native_dev.jsonl

Prints one line per model, then how far the later models' transcripts are from the first's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from asr.audio import SAMPLE_RATE, load_audio
from asr.corpora import read_corpus
from asr.decode import greedy_decode
from asr.defaults import OFFLINE_MODEL_TYPE, SHARED_SPEECH
from asr.metrics import ErrorRates
from asr.text import Vocabulary
from export.parity import run_offline
from streaming.engine import onnx_session


def transcribe(path: Path, recordings: list[np.ndarray]) -> tuple[list[str], float]:
    """Greedy transcripts of `recordings` by the offline ONNX model at `path`, and the seconds
    onnxruntime took."""
    session = onnx_session(path, threads=1)
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("model_type") != OFFLINE_MODEL_TYPE:
        raise SystemExit(f"{path}: not an offline model made by export_offline_onnx")
    vocab = Vocabulary(tuple(json.loads(meta["vocabulary"])))
    frame_seconds = float(meta["frame_seconds"])
    texts, seconds = [], 0.0
    for audio in recordings:
        start = time.perf_counter()
        log_probs, = run_offline(session, [audio])
        seconds += time.perf_counter() - start
        texts.append(greedy_decode(log_probs, vocab, frame_seconds).text)
    return texts, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="offline ONNX model files")
    parser.add_argument("--corpus", type=Path, default=SHARED_SPEECH / "native_dev.jsonl")
    args = parser.parse_args()
    utterances = read_corpus(args.corpus)
    recordings = [load_audio(u.audio) for u in utterances]
    audio_seconds = sum(len(a) for a in recordings) / SAMPLE_RATE
    print(f"{args.corpus}: {len(utterances)} utterances, {audio_seconds / 60:.1f} min")
    first: list[str] = []
    for path in args.models:
        texts, seconds = transcribe(path, recordings)
        rates = ErrorRates()
        for utterance, text in zip(utterances, texts, strict=True):
            rates.add(utterance.text, text)
        line = (f"{path}: {path.stat().st_size / 1e6:.1f} MB, WER {rates.wer:.2%}, "
                f"CER {rates.cer:.2%}, RTF {seconds / audio_seconds:.4f}")
        if first:
            agreement = ErrorRates()
            for reference, text in zip(first, texts, strict=True):
                agreement.add(reference, text)
            line += (f"; against {args.models[0].name}: WER {agreement.wer:.2%}, "
                     f"CER {agreement.cer:.2%}")
        else:
            first = texts
        print(line)


if __name__ == "__main__":
    main()
