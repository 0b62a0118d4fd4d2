"""The model's alphabet and the text normalisation shared by training and scoring."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

BLANK = "<blank>"
CHARACTERS = " 'abcdefghijklmnopqrstuvwxyz"

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_SUFFIXES = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                     "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def spell_number(n: int) -> str:
    """English words for a non-negative integer: 1984 -> 'one thousand nine hundred eighty four'."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + spell_number(rest))
    for scale, name in _SCALES:
        if n >= scale:
            high, rest = divmod(n, scale)
            return spell_number(high) + " " + name + ("" if rest == 0 else " " + spell_number(rest))
    raise AssertionError("unreachable")


def spell_ordinal(n: int) -> str:
    """'first', 'twenty second', 'one hundredth'."""
    words = spell_number(n).split()
    last = words[-1]
    if last in _ORDINAL_SUFFIXES:
        words[-1] = _ORDINAL_SUFFIXES[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _spell_year(n: int) -> str:
    """Years as people read them: 1984 -> 'nineteen eighty four', 2005 -> 'two thousand five'."""
    high, low = divmod(n, 100)
    if n % 1000 < 10 or high % 10 == 0:
        return spell_number(n)
    return spell_number(high) + " " + ("hundred" if low == 0 else
                                       ("oh " + _ONES[low] if low < 10 else spell_number(low)))


def _spell_match(match: re.Match) -> str:
    raw, suffix = match.group(1), match.group(2)
    digits = raw.replace(",", "")
    if "." in digits:
        whole, frac = digits.split(".", 1)
        return f" {spell_number(int(whole))} point {' '.join(_ONES[int(d)] for d in frac)} "
    value = int(digits)
    if suffix:
        return f" {spell_ordinal(value)} "
    if raw == digits and len(digits) == 4 and 1100 <= value <= 2099:
        return f" {_spell_year(value)} "
    if len(digits) > 15:
        return " " + " ".join(_ONES[int(d)] for d in digits) + " "
    return f" {spell_number(value)} "


_NUMBER = re.compile(r"(\d+(?:,\d{3})*(?:\.\d+)?)(st|nd|rd|th)?", re.IGNORECASE)
_REPLACEMENTS = (("&", " and "), ("%", " percent "), ("+", " plus "), ("@", " at "))


def normalize_text(text: str) -> str:
    """Map free text onto the alphabet: lowercase a-z, apostrophe and single spaces.

    Numbers are spelled out, accents are stripped, curly apostrophes become straight ones,
    hyphens and other punctuation become spaces.
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    for symbol, words in _REPLACEMENTS:
        text = text.replace(symbol, words)
    text = _NUMBER.sub(_spell_match, text).lower()
    text = re.sub(r"[^a-z' ]+", " ", text)
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)  # quotes, not apostrophes
    return " ".join(text.split())


@dataclass(frozen=True)
class Vocabulary:
    """CTC output tokens: the blank at index 0, then one token per character."""

    tokens: tuple[str, ...] = (BLANK, *CHARACTERS)

    @property
    def blank_id(self) -> int:
        return self.tokens.index(BLANK)

    @property
    def space_id(self) -> int:
        return self.tokens.index(" ")

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Token ids of already-normalised text; raises ValueError on a character outside it."""
        index = {token: i for i, token in enumerate(self.tokens)}
        try:
            return [index[c] for c in text]
        except KeyError as error:
            raise ValueError(f"character {error.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: list[int]) -> str:
        """Text of token ids (blanks dropped, no CTC collapsing)."""
        return "".join(self.tokens[i] for i in ids if i != self.blank_id)
