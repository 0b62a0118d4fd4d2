"""Bundled default models and settings shared by the CLI and the API (imports no torch)."""

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
OFFLINE_MODEL = ASSETS / "offline.pt"  # the training checkpoint (`asr train --init`), not run
OFFLINE_ONNX = ASSETS / "offline.onnx"  # what `Recognizer` and `asr transcribe` run
OFFLINE_ONNX_INT8 = ASSETS / "offline.int8.onnx"
STREAMING_MODEL = ASSETS / "streaming" / "model.onnx"
STREAMING_MODEL_INT8 = ASSETS / "streaming" / "model.int8.onnx"
STREAMING_CHECKPOINT = ASSETS / "streaming" / "model.pt"  # for `asr train --init`, not run
LANGUAGE_MODEL = ASSETS / "lm.bin"
OFFLINE_MODEL_TYPE = "lstm-ctc-offline"  # ONNX metadata `model_type` of an exported offline model

# onnxruntime threads within operators, for offline and streaming recognition alike
# (measured: scripts/benchmark_startup.py; README "Speed")
THREADS = 1
THREADS_HELP = (f"CPU threads onnxruntime uses within operators (0: one per core). The default "
                f"{THREADS} was the fastest measured, idle and with other work running (README, "
                "Speed); results are the same at any setting")

# beam search with the language model, hypotheses merged by adding their probabilities
# (`asr.beam`; tuned on native dev speech: RESULTS.md)
BEAM_SIZE = 1024
BEAM_THRESHOLD = 10.0  # hypotheses scoring this far below the best are dropped
LM_WEIGHT = 2.0
WORD_SCORE = -3.0
# the word LSTM beside the n-gram (lm.bin.rnn.npz) rescores this many best word sequences,
# adding RESCORE_WEIGHT times its log10 probability (as LM_WEIGHT scales the n-gram's) and
# RESCORE_WORD_SCORE per word (tuned on native dev speech; 20 rather than 50 candidates: WER
# within 0.2 points for half the CPU a final result, so more streams per core in `asr serve`:
# RESULTS.md, sixteenth session)
RESCORE_NBEST = 20
RESCORE_WEIGHT = 0.75
RESCORE_WORD_SCORE = 0.5


@dataclass(frozen=True)
class Decoding:
    """The beam search's settings (`asr.beam.BeamSearchDecoder`), which every recogniser takes
    with its LM. A new setting is one field here and, for the command line, one entry in
    `DECODING_OPTIONS`."""

    beam_size: int = BEAM_SIZE
    lm_weight: float = LM_WEIGHT
    word_score: float = WORD_SCORE
    rescore_nbest: int = RESCORE_NBEST
    rescore_weight: float = RESCORE_WEIGHT  # 0: no rescoring by the word LSTM
    rescore_word_score: float = RESCORE_WORD_SCORE

    def __post_init__(self) -> None:
        for name, low in (("beam_size", 1), ("rescore_nbest", 1), ("rescore_weight", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} (--{name.replace('_', '-')}) must be at least {low}, "
                                 f"not {getattr(self, name)}")


DEFAULT_DECODING = Decoding()


def cache_dir() -> Path:
    """Where built pieces (LM lexicons, exports of checkpoints) are cached:
    `$XDG_CACHE_HOME/lstm-asr`, by default `~/.cache/lstm-asr`."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "lstm-asr"


def language_model(option: str | None) -> str | None:
    """The LM a `--lm` option names: None means the bundled one (if installed), "none" none."""
    if option is None:
        return str(LANGUAGE_MODEL) if LANGUAGE_MODEL.is_file() else None
    return None if option.lower() == "none" else option


def lm_help() -> str:
    """`--lm` help text, naming the default actually in effect."""
    return ("KenLM word n-gram (binary or ARPA, with LM.words.txt beside it) for beam search, "
            "its best word sequences rescored by the word LSTM LM.rnn.npz if that is beside it "
            "too; 'none' for greedy decoding"
            + (f" (default: the bundled {LANGUAGE_MODEL.name} and {LANGUAGE_MODEL.name}.rnn.npz)"
               if LANGUAGE_MODEL.is_file() else " (default: greedy)"))


# the command-line options of `Decoding`'s settings: field -> (metavar, help)
DECODING_OPTIONS = {
    "beam_size": ("N", "hypotheses the beam search keeps: smaller is faster and less accurate "
                       "(256 had 1.3 points more WER on native dev speech, in about half the "
                       "decoding time: RESULTS.md)"),
    "lm_weight": ("W", "weight of the LM's log-probabilities against the model's"),
    "word_score": ("S", "added per word: higher gives more, shorter words"),
    "rescore_weight": ("W", "weight of the word LSTM's log-probabilities when it rescores the "
                            "beam search's best word sequences; 0 turns the rescoring off, "
                            "which is faster and 0.75 points of WER less accurate (RESULTS.md)"),
    "rescore_nbest": ("N", "best word sequences the word LSTM rescores"),
}


def add_lm_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                   note: str = "") -> None:
    """`--lm` and the options of `DECODING_OPTIONS`; `note` ends the `--lm` help."""
    parser.add_argument("--lm", metavar="LM", help=lm_help() + note)
    for name, (metavar, text) in DECODING_OPTIONS.items():
        default = getattr(DEFAULT_DECODING, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default,
                            metavar=metavar, help=text)


def lm_options(args: argparse.Namespace) -> dict:
    """The recognisers' `lm` and `decoding` arguments from those options."""
    return {"lm": language_model(args.lm),
            "decoding": Decoding(**{name: getattr(args, name) for name in DECODING_OPTIONS})}


# training arithmetic: bf16 autocast where the hardware has it ("auto"), or forced
PRECISIONS = ("auto", "bf16", "fp32")

# the project's shared training data, beside a checkout (used by scripts/ and tests/ only)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_SPEECH = SHARED_DATA / "speech"
