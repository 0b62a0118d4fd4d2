"""Text normalisation and the vocabulary."""

import pytest

from asr.text import Vocabulary, normalize_text, spell_number, spell_ordinal


@pytest.mark.parametrize(("raw", "expected"), [
    ("Hello, World!", "hello world"),
    ("It's 5 o'clock", "it's five o'clock"),
    ("In 1984 there were 1,250 of them", "in nineteen eighty four there were "
     "one thousand two hundred fifty of them"),
    ("the 3rd and 21st", "the third and twenty first"),
    ("3.5% & more", "three point five percent and more"),
    ("Café “quoted” — text", "cafe quoted text"),
    ("rock ’n’ roll", "rock n roll"),
    ("'single quotes'", "single quotes"),
    ("2005", "two thousand five"),
    ("", ""),
])
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_spelled_numbers():
    assert spell_number(0) == "zero"
    assert spell_number(115) == "one hundred fifteen"
    assert spell_number(2_000_019) == "two million nineteen"
    assert spell_ordinal(12) == "twelfth"
    assert spell_ordinal(40) == "fortieth"


def test_vocabulary_round_trip():
    vocab = Vocabulary()
    assert vocab.blank_id == 0 and len(vocab) == 29
    assert vocab.decode(vocab.encode("don't stop")) == "don't stop"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.encode("Upper")
