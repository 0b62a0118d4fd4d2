"""Word confidences (`Word.conf`) on real speech: higher on correctly recognised words than on
wrong ones, for the default (beam + LM) and greedy decoding."""

from __future__ import annotations

import difflib

import pytest

from asr.audio import load_audio
from asr.corpora import read_corpus
from asr.defaults import OFFLINE_ONNX, SHARED_SPEECH
from asr.transcribe import Recognizer

NATIVE_DEV = SHARED_SPEECH / "native_dev.jsonl"
UTTERANCES = 100
MIN_GAP = 0.05  # mean confidence of correct words over that of wrong ones, at least

pytestmark = pytest.mark.skipif(not OFFLINE_ONNX.is_file(), reason="no bundled offline model")


def correct_flags(reference: str, hypothesis: list[str]) -> list[bool]:
    """For each hypothesis word, whether a best alignment with the reference matches it."""
    matcher = difflib.SequenceMatcher(None, reference.split(), hypothesis, autojunk=False)
    flags = [False] * len(hypothesis)
    for block in matcher.get_matching_blocks():
        flags[block.b : block.b + block.size] = [True] * block.size
    return flags


@pytest.fixture(scope="module")
def dev_audio():
    if not NATIVE_DEV.is_file():
        pytest.skip(f"native dev set not found at {NATIVE_DEV}")
    return [(u.text, load_audio(u.audio)) for u in read_corpus(NATIVE_DEV)[:UTTERANCES]]


@pytest.mark.parametrize("lm", ["default", None])
def test_confidence_is_higher_on_correct_words(dev_audio, lm):
    recognizer = Recognizer() if lm == "default" else Recognizer(lm=None)
    transcripts = recognizer.transcribe_many([audio for _, audio in dev_audio])
    right, wrong = [], []
    for (reference, _), transcript in zip(dev_audio, transcripts, strict=True):
        flags = correct_flags(reference, [w.word for w in transcript.words])
        for word, correct in zip(transcript.words, flags, strict=True):
            assert 0.0 <= word.conf <= 1.0
            (right if correct else wrong).append(word.conf)
    assert len(right) >= 20 and len(wrong) >= 20  # enough of both to compare
    assert sum(right) / len(right) > sum(wrong) / len(wrong) + MIN_GAP


def test_alignment_labels():
    assert correct_flags("the cat sat on the mat", "a cat sat in the mat".split()) == [
        False, True, True, False, True, True]
