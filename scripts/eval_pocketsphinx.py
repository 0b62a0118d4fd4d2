"""Score pocketsphinx (its bundled US English model) on a test set, exactly as `asr evaluate`
scores our models: same audio loading, text normalisation, WER/CER and real-time factor.

    pip install -e ".[results]"
    python scripts/eval_pocketsphinx.py work/corpus/dev.jsonl --output work/eval/pocketsphinx.jsonl
"""

from __future__ import annotations

import argparse

import numpy as np
from pocketsphinx import Decoder

from asr.corpora import read_corpus
from asr.decode import Transcript
from asr.evaluate import evaluate
from asr.text import normalize_text

INT16_MAX = 32767


class PocketSphinx:
    """pocketsphinx's default (en-us acoustic model, 3-gram LM, CMU dictionary) as a transcriber."""

    def __init__(self) -> None:
        self.decoder = Decoder()

    def transcribe(self, audio: np.ndarray) -> Transcript:
        pcm = (np.clip(audio, -1.0, 1.0) * INT16_MAX).astype(np.int16).tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        return Transcript(normalize_text(hypothesis.hypstr) if hypothesis else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpora", nargs="+", help="manifest .jsonl, LibriSpeech or Common Voice")
    parser.add_argument("--output", help="write reference/hypothesis pairs here as JSON lines")
    args = parser.parse_args()
    utterances = [u for corpus in args.corpora for u in read_corpus(corpus)]
    report = evaluate(PocketSphinx(), utterances)
    print(report.summary())
    if args.output:
        report.write_pairs(args.output)


if __name__ == "__main__":
    main()
