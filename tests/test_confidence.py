"""Word confidences (`Word.conf`) on real speech: higher on correctly recognised words than on
wrong ones, for the default (beam + LM) and greedy decoding, offline and streaming."""

from __future__ import annotations

import difflib

import pytest

from asr.audio import load_audio
from asr.corpora import read_corpus
from asr.defaults import OFFLINE_ONNX, SHARED_SPEECH, STREAMING_MODEL_INT8
from asr.transcribe import Recognizer
from streaming.engine import StreamingModel

NATIVE_DEV = SHARED_SPEECH / "native_dev.jsonl"
UTTERANCES = 100
MIN_GAP = 0.05  # mean confidence of correct words over that of wrong ones, at least

pytestmark = pytest.mark.skipif(not (OFFLINE_ONNX.is_file() and STREAMING_MODEL_INT8.is_file()),
                                reason="no bundled models")


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


def streaming_words(audios: list, lm: bool) -> list[list]:
    """The words of each recording's final result, streamed through the streaming int8 model
    (with the bundled LM or greedy)."""
    model = StreamingModel(STREAMING_MODEL_INT8, **({} if lm else {"lm": None}))
    words = []
    for audio in audios:
        stream = model.stream()
        stream.accept_waveform(audio, 16000)
        words.append(stream.final_result().words)
    return words


@pytest.mark.parametrize("streaming", [False, True], ids=["offline", "streaming"])
@pytest.mark.parametrize("lm", ["default", None])
def test_confidence_is_higher_on_correct_words(dev_audio, lm, streaming):
    if streaming:
        all_words = streaming_words([audio for _, audio in dev_audio], lm == "default")
    else:
        recognizer = Recognizer() if lm == "default" else Recognizer(lm=None)
        all_words = [t.words for t in recognizer.transcribe_many([a for _, a in dev_audio])]
    right, wrong = [], []
    for (reference, _), words in zip(dev_audio, all_words, strict=True):
        flags = correct_flags(reference, [w.word for w in words])
        for word, correct in zip(words, flags, strict=True):
            assert 0.0 <= word.conf <= 1.0
            (right if correct else wrong).append(word.conf)
    assert len(right) >= 20 and len(wrong) >= 20  # enough of both to compare
    assert sum(right) / len(right) > sum(wrong) / len(wrong) + MIN_GAP


def test_alignment_labels():
    assert correct_flags("the cat sat on the mat", "a cat sat in the mat".split()) == [
        False, True, True, False, True, True]
