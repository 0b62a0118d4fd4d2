"""Beam search with and without a (hand-written, tiny) KenLM word LM."""

from __future__ import annotations

import numpy as np
import pytest

from asr.beam import BeamSearchDecoder, ctc_collapse
from asr.decode import greedy_decode
from asr.defaults import cache_dir
from asr.text import Vocabulary

VOCAB = Vocabulary()
FRAME = 0.04

# log10 probabilities; "tha" is a word, but a very unlikely one.
ARPA = """\
\\data\\
ngram 1=8
ngram 2=5

\\1-grams:
-1.5\t<unk>\t0
-99\t<s>\t-0.3
-1.0\t</s>\t0
-0.7\tthe\t-0.3
-5.0\ttha\t-0.3
-1.2\tcat\t-0.3
-1.2\tsat\t-0.3
-1.5\tmat\t-0.3

\\2-grams:
-0.2\t<s> the
-0.3\tthe cat
-0.3\tcat sat
-0.2\tsat </s>
-0.5\tthe mat

\\end\\
"""
WORDS = ["the", "tha", "cat", "sat", "mat"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A cache folder of the test's own (the lexicon cache goes there)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def lm_path(tmp_path):
    path = tmp_path / "lm.arpa"
    path.write_text(ARPA)
    (tmp_path / "lm.arpa.words.txt").write_text("\n".join(WORDS) + "\n")
    return path


def peaky(frames: str, sharpness: float = 8.0) -> np.ndarray:
    """Log-softmax `[T, V]` with one clear winner per frame; '_' is the blank."""
    logits = np.zeros((len(frames), len(VOCAB)), dtype=np.float32)
    for t, c in enumerate(frames):
        logits[t, VOCAB.blank_id if c == "_" else VOCAB.tokens.index(c)] = sharpness
    return log_softmax(logits)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))).astype(np.float32)


def ambiguous_the_cat_sat() -> np.ndarray:
    """'the cat sat' where the vowel of 'the' looks slightly more like an 'a'."""
    frames = "__tt_h_?e__ _cc_aa_t_ __ss_a_tt__"
    logits = np.zeros((len(frames), len(VOCAB)), dtype=np.float32)
    for t, c in enumerate(frames.replace("?", "e")):
        logits[t, VOCAB.blank_id if c == "_" else VOCAB.tokens.index(c)] = 8.0
    vowel = frames.index("?")
    logits[vowel : vowel + 2, VOCAB.tokens.index("a")] = 8.0  # 'a' wins both frames...
    logits[vowel : vowel + 2, VOCAB.tokens.index("e")] = 7.6  # ...but only just
    return log_softmax(logits)


def test_greedy_picks_the_non_word():
    assert greedy_decode(ambiguous_the_cat_sat(), VOCAB, FRAME).text == "tha cat sat"


def test_lm_beam_fixes_the_word(lm_path):
    decoder = BeamSearchDecoder(VOCAB, lm_path)
    assert decoder.decode(ambiguous_the_cat_sat(), FRAME).text == "the cat sat"


def test_without_lm_weight_the_acoustics_win(lm_path):
    decoder = BeamSearchDecoder(VOCAB, lm_path, lm_weight=0.0)
    assert decoder.decode(ambiguous_the_cat_sat(), FRAME).text == "tha cat sat"


def test_lexicon_excludes_unknown_words(tmp_path, lm_path):
    words = tmp_path / "no_tha.txt"
    words.write_text("the\ncat\nsat\nmat\n")
    decoder = BeamSearchDecoder(VOCAB, lm_path, words_path=words, lm_weight=0.0)
    assert decoder.decode(ambiguous_the_cat_sat(), FRAME).text == "the cat sat"


def test_word_times_in_seconds(lm_path):
    log_probs = peaky("__tt_h_ee__ _cc_aa_t_ __ss_a_tt__")
    transcript = BeamSearchDecoder(VOCAB, lm_path).decode(log_probs, FRAME, offset=10.0)
    assert [w.word for w in transcript.words] == ["the", "cat", "sat"]
    times = [t for w in transcript.words for t in (w.start, w.end)]  # start, end of each word
    assert times == pytest.approx([10.08, 10.32, 10.52, 10.80, 10.96, 11.20])
    assert times == sorted(times)
    assert transcript == greedy_decode(log_probs, VOCAB, FRAME, offset=10.0)


def test_lm_beam_finishes_the_last_word_without_trailing_space(lm_path):
    transcript = BeamSearchDecoder(VOCAB, lm_path).decode(peaky("_cc_aa_t_ _ss_a_t"), FRAME)
    assert transcript.text == "cat sat"
    assert transcript.words[-1].end == pytest.approx(17 * FRAME)


@pytest.mark.parametrize("seed", range(5))
def test_no_lm_beam_equals_greedy_on_peaky_input(seed):
    rng = np.random.default_rng(seed)
    letters = list(" 'abcdefghijklmnopqrstuvwxyz")
    frames = []
    for _ in range(40):
        token = rng.choice(["_", *letters])
        frames.append(token * int(rng.integers(1, 4)))
    log_probs = peaky("".join(frames))
    expected = greedy_decode(log_probs, VOCAB, FRAME, offset=1.5)
    assert BeamSearchDecoder(VOCAB, beam_size=8).decode(log_probs, FRAME, 1.5) == expected


def test_no_lm_repeated_letters_need_a_blank():
    decoder = BeamSearchDecoder(VOCAB)
    assert decoder.decode(peaky("_l_ll_ll__o"), FRAME).text == "lllo"
    assert decoder.decode(peaky("  hi  "), FRAME).text == "hi"
    assert decoder.decode(np.zeros((0, len(VOCAB)), np.float32), FRAME).text == ""


def test_ctc_collapse():
    assert ctc_collapse([0, 5, 5, 0, 5, 1, 1, 0], blank_id=0) == [(5, 1), (5, 4), (1, 5)]


def test_missing_lm_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="language model not found"):
        BeamSearchDecoder(VOCAB, tmp_path / "missing.bin")


def test_missing_word_list_raises(tmp_path, lm_path):
    with pytest.raises(FileNotFoundError, match="word list not found"):
        BeamSearchDecoder(VOCAB, lm_path, words_path=tmp_path / "missing.txt")


def test_wrong_width_raises():
    with pytest.raises(ValueError, match="shape"):
        BeamSearchDecoder(VOCAB).decode(np.zeros((3, 5), np.float32), FRAME)


def cached_lexicons() -> list:
    return sorted(cache_dir().glob("lexicon-*.npz"))


def test_the_lexicon_is_cached_once_and_reused(lm_path):
    assert BeamSearchDecoder(VOCAB, lm_path).decode(ambiguous_the_cat_sat(), FRAME).text == (
        "the cat sat")
    (cache,) = cached_lexicons()
    written = cache.stat().st_mtime_ns
    decoder = BeamSearchDecoder(VOCAB, lm_path)
    assert decoder.decode(ambiguous_the_cat_sat(), FRAME).text == "the cat sat"
    assert decoder.words == WORDS
    assert cached_lexicons() == [cache] and cache.stat().st_mtime_ns == written


def test_a_damaged_cache_is_rebuilt(lm_path):
    BeamSearchDecoder(VOCAB, lm_path)
    (cache,) = cached_lexicons()
    for damage in (b"", b"PK\x03\x04 not really a zip", cache.read_bytes()[:200]):
        cache.write_bytes(damage)
        decoder = BeamSearchDecoder(VOCAB, lm_path)
        assert decoder.decode(ambiguous_the_cat_sat(), FRAME).text == "the cat sat"
        assert decoder.words == WORDS
        assert cache.stat().st_size > 200  # written afresh


def test_a_changed_word_list_gets_its_own_cache(lm_path):
    BeamSearchDecoder(VOCAB, lm_path, lm_weight=0.0)
    words = lm_path.with_name(lm_path.name + ".words.txt")
    words.write_text("the\ncat\nsat\nmat\n")  # no "tha" any more
    decoder = BeamSearchDecoder(VOCAB, lm_path, lm_weight=0.0)
    assert decoder.decode(ambiguous_the_cat_sat(), FRAME).text == "the cat sat"
    assert len(cached_lexicons()) == 2


def test_without_a_writable_cache_it_still_works(tmp_path, monkeypatch, lm_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    for _ in range(2):
        decoder = BeamSearchDecoder(VOCAB, lm_path)
        assert decoder.decode(ambiguous_the_cat_sat(), FRAME).text == "the cat sat"


def test_word_confidence_follows_the_posteriors(lm_path):
    """Sure frames give confidence near 1; the LM's 'the' over the acoustically likelier 'tha'
    is less sure, at its vowel only."""
    sure = BeamSearchDecoder(VOCAB, lm_path).decode(peaky("_cc_aa_t_ _ss_a_t"), FRAME)
    assert all(w.conf > 0.99 for w in sure.words)
    words = BeamSearchDecoder(VOCAB, lm_path).decode(ambiguous_the_cat_sat(), FRAME).words
    assert [w.word for w in words] == ["the", "cat", "sat"]
    assert words[0].conf < 0.9 < min(w.conf for w in words[1:])
    greedy = greedy_decode(ambiguous_the_cat_sat(), VOCAB, FRAME).words
    assert greedy[0].word == "tha" and words[0].conf < greedy[0].conf < 0.99
