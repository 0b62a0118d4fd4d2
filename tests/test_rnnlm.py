"""The word LSTM LM: numpy scoring equals the torch model it was saved from, training on a small
corpus learns it, a bad file is a clear error, and the beam search's n-best rescoring picks what
the LSTM prefers."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from common import EXAMPLE, load_script

from asr.audio import load_audio
from asr.beam import BeamSearchDecoder
from asr.defaults import LANGUAGE_MODEL, RESCORE_NBEST, Decoding, lm_options
from asr.rnnlm import RNNLM, LMDims
from asr.rnnlm_torch import WordLSTM, save_npz
from asr.text import Vocabulary

train_rnnlm = load_script("train_rnnlm")

SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "the cat ran to the dog"]


def _torch_log_prob(model: WordLSTM, lm: RNNLM, sentence: str) -> float:
    ids = lm.ids(sentence)
    inputs = torch.tensor([[lm.end, *ids[:-1]]])
    with torch.no_grad():
        loss, _ = model(inputs, torch.tensor([ids]))
    return -loss.item() * len(ids)


def test_numpy_scores_equal_the_torch_model(tmp_path: Path) -> None:
    words = ["</s>", "<unk>", *sorted({w for s in SENTENCES for w in s.split()})]
    torch.manual_seed(0)
    model = WordLSTM(LMDims(len(words), cutoffs=(4, 8), embed=16, hidden=24, div=2)).eval()
    save_npz(model, words, tmp_path / "lm.npz")
    lm = RNNLM(tmp_path / "lm.npz")
    sentences = [*SENTENCES, "the zebra sat", ""]  # an unknown word; the empty sentence
    scores = lm.score(sentences)
    assert scores.shape == (len(sentences),)
    for sentence, score in zip(sentences, scores, strict=True):
        assert score == pytest.approx(_torch_log_prob(model, lm, sentence), abs=0.02)
    assert lm.score([]).shape == (0,)


def test_training_learns_the_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt.gz"
    with gzip.open(corpus, "wt", encoding="utf-8") as f:
        f.write("\n".join(SENTENCES * 50) + "\n")
    words = tmp_path / "words.txt"
    words.write_text("\n".join(sorted({w for s in SENTENCES for w in s.split()})) + "\n")
    out = tmp_path / "lm.npz"
    train_rnnlm.main(["--out", str(out), "--corpus", str(corpus), "--words", str(words),
                      "--epochs", "30", "--hidden", "32", "--embed", "16", "--batch", "4",
                      "--steps", "8", "--lr", "1e-2"])
    lm = RNNLM(out)
    seen, shuffled = lm.score(["the cat sat on the mat", "mat the on sat cat the"])
    assert seen > shuffled + 5
    assert (tmp_path / "lm.npz.ckpt").is_file()  # for --resume


def test_missing_inputs_are_clear_errors(tmp_path: Path) -> None:
    out, corpus = tmp_path / "lm.npz", tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\n")
    missing = str(tmp_path / "missing")
    with pytest.raises(SystemExit, match="corpus not found"):
        train_rnnlm.main(["--out", str(out), "--corpus", missing])
    with pytest.raises(SystemExit, match="word list not found"):
        train_rnnlm.main(["--out", str(out), "--corpus", str(corpus), "--words", missing])
    assert not out.exists()


def test_a_file_that_is_not_an_lm_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "lm.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a word LSTM LM file"):
        RNNLM(bad)


class _Prefers:
    """An LSTM stand-in that likes one sentence far more than any other (none: all alike)."""

    def __init__(self, sentence: str | None = None) -> None:
        self.sentence = sentence
        self.seen: list[str] = []

    def score(self, sentences: list[str]) -> np.ndarray:
        self.seen += sentences
        return np.array([100.0 if s == self.sentence else 0.0 for s in sentences])


def test_rescoring_picks_from_the_n_best_what_the_lstm_prefers(tmp_path: Path) -> None:
    from asr.transcribe import Recognizer

    lm = tmp_path / "lm.bin"  # the bundled n-gram, without an LSTM beside it
    shutil.copy(LANGUAGE_MODEL, lm)
    shutil.copy(f"{LANGUAGE_MODEL}.words.txt", f"{lm}.words.txt")
    recognizer = Recognizer(lm=lm)
    decoder: BeamSearchDecoder = recognizer.beam
    assert decoder.rescorer is None
    audio = load_audio(EXAMPLE)
    assert recognizer.transcribe(audio).text == "he could not see himself"
    decoder.rescorer, decoder.rescore_weight = _Prefers(), 1.0
    assert recognizer.transcribe(audio).text == "he could not see himself"  # a tie: the best
    candidates = decoder.rescorer.seen
    assert candidates[0] == "he could not see himself"
    assert len(set(candidates)) == len(candidates)  # distinct word sequences
    assert 2 <= len(candidates) <= RESCORE_NBEST
    decoder.rescorer = _Prefers(candidates[-1])
    assert recognizer.transcribe(audio).text == candidates[-1]
    decoder.rescore_nbest, decoder.rescorer = 3, _Prefers()
    recognizer.transcribe(audio)
    assert decoder.rescorer.seen == candidates[:3]


def test_the_bundled_lstm_beside_the_lm_is_used_unless_its_weight_is_zero() -> None:
    assert isinstance(BeamSearchDecoder(Vocabulary(), LANGUAGE_MODEL).rescorer, RNNLM)
    assert BeamSearchDecoder(Vocabulary(), LANGUAGE_MODEL, rescore_weight=0).rescorer is None


def test_the_command_line_settings_reach_every_recogniser() -> None:
    from asr.cli import build_parser
    from asr.transcribe import Recognizer
    from streaming.engine import StreamingModel

    args = build_parser().parse_args(["transcribe", str(EXAMPLE), "--beam-size", "64",
                                      "--rescore-nbest", "7", "--rescore-weight", "0"])
    options = lm_options(args)
    assert options["decoding"] == Decoding(beam_size=64, rescore_nbest=7, rescore_weight=0)
    assert Recognizer(**options).beam.rescorer is None
    assert StreamingModel(**options)._beam.rescorer is None
    decoder = Recognizer(decoding=Decoding(beam_size=64, rescore_nbest=7)).beam
    assert isinstance(decoder.rescorer, RNNLM) and decoder.rescore_nbest == 7
