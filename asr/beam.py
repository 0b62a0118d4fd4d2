"""CTC beam search with an optional KenLM word n-gram, via flashlight-text.

With an LM the search is constrained to the LM's vocabulary (`LexiconDecoder`): each word is
spelled as its characters followed by the space token, so words are always separated by a
space.  Without one it is a plain CTC prefix beam search over characters
(`LexiconFreeDecoder` with a zero LM).  Build an LM with `scripts/build_lm.py`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from flashlight.lib.text.decoder import (
    CriterionType,
    LexiconDecoder,
    LexiconDecoderOptions,
    LexiconFreeDecoder,
    LexiconFreeDecoderOptions,
    SmearingMode,
    Trie,
    ZeroLM,
)
from flashlight.lib.text.dictionary import Dictionary

from asr.decode import Transcript, words_from_tokens
from asr.defaults import BEAM_SIZE, LM_WEIGHT, WORD_SCORE
from asr.text import Vocabulary

UNK = "<unk>"
_SPECIAL_WORDS = frozenset({"<s>", "</s>", UNK})


def load_words(path: str | Path) -> list[str]:
    """Words of a word list, one per line (blank lines and <s>, </s>, <unk> skipped)."""
    with open(path, encoding="utf-8") as f:
        return [w for w in (line.strip() for line in f) if w and w not in _SPECIAL_WORDS]


class BeamSearchDecoder:
    """CTC beam-search decoder; with `lm_path`, a lexicon-constrained KenLM decoder.

    `lm_path` is a KenLM binary or ARPA file; `words_path` (default `<lm_path>.words.txt`)
    lists its words, one per line.  `lm_weight` scales LM log-probabilities (natural log),
    `word_score` is added per word (and `unk_score` per out-of-lexicon word, -inf to forbid
    them), `sil_score` per space token.  Not thread-safe: use one decoder per thread.
    """

    def __init__(self, vocab: Vocabulary, lm_path: str | Path | None = None,
                 words_path: str | Path | None = None, beam_size: int = BEAM_SIZE,
                 beam_threshold: float = 25.0, lm_weight: float = LM_WEIGHT,
                 word_score: float = WORD_SCORE,
                 unk_score: float = -math.inf, sil_score: float = 0.0,
                 beam_size_token: int | None = None) -> None:
        self.vocab = vocab
        self.lm_path = None if lm_path is None else Path(lm_path)
        beam_size_token = beam_size_token or len(vocab)
        if self.lm_path is None:
            options = LexiconFreeDecoderOptions(
                beam_size=beam_size, beam_size_token=beam_size_token,
                beam_threshold=beam_threshold, lm_weight=0.0, sil_score=sil_score,
                log_add=False, criterion_type=CriterionType.CTC)
            self._lm = ZeroLM()
            self._decoder = LexiconFreeDecoder(options, self._lm, vocab.space_id, vocab.blank_id,
                                               [])
            return

        words_path = Path(words_path) if words_path is not None else Path(f"{lm_path}.words.txt")
        if not self.lm_path.is_file():
            raise FileNotFoundError(f"language model not found: {self.lm_path} "
                                    "(build one with scripts/build_lm.py)")
        if not words_path.is_file():
            raise FileNotFoundError(f"LM word list not found: {words_path} (one word per line; "
                                    "scripts/build_lm.py writes it next to the LM)")
        from flashlight.lib.text.decoder.kenlm import KenLM

        self.words = [w for w in load_words(words_path) if _spellable(w, vocab)]
        self.word_dict = Dictionary()
        for word in [UNK, *self.words]:
            self.word_dict.add_entry(word)
        unk_id = self.word_dict.get_index(UNK)
        self.word_dict.set_default_index(unk_id)
        self._lm = KenLM(str(self.lm_path), self.word_dict)
        self._trie = self._build_trie()
        options = LexiconDecoderOptions(
            beam_size=beam_size, beam_size_token=beam_size_token, beam_threshold=beam_threshold,
            lm_weight=lm_weight, word_score=word_score, unk_score=unk_score, sil_score=sil_score,
            log_add=False, criterion_type=CriterionType.CTC)
        self._decoder = LexiconDecoder(options, self._trie, self._lm, vocab.space_id,
                                       vocab.blank_id, unk_id, [], False)

    def _build_trie(self) -> Trie:
        """Spelling trie of the lexicon, each node scored by its best word's unigram LM score."""
        trie = Trie(len(self.vocab), self.vocab.space_id)
        start = self._lm.start(False)
        for word in self.words:
            word_id = self.word_dict.get_index(word)
            _, score = self._lm.score(start, word_id)
            trie.insert([*self.vocab.encode(word), self.vocab.space_id], word_id, score)
        trie.smear(SmearingMode.MAX)
        return trie

    def decode(self, log_probs: np.ndarray, frame_seconds: float,
               offset: float = 0.0) -> Transcript:
        """Best transcript of `[T, V]` CTC log-probabilities, with word times in seconds."""
        emissions = np.asarray(log_probs, dtype=np.float32)
        if emissions.ndim != 2 or emissions.shape[1] != len(self.vocab):
            raise ValueError(f"expected log-probs of shape [T, {len(self.vocab)}], "
                             f"got {emissions.shape}")
        frames = emissions.shape[0]
        if frames == 0:
            return Transcript("")
        if self.lm_path is not None:
            # A final certain space frame lets every hypothesis finish its last word (the
            # lexicon spells words with a trailing space), so the LM scores it too.
            space = np.full((1, len(self.vocab)), -1e4, dtype=np.float32)
            space[0, self.vocab.space_id] = 0.0
            emissions = np.concatenate([emissions, space])
        emissions = np.ascontiguousarray(emissions)
        results = self._decoder.decode(emissions.ctypes.data, emissions.shape[0],
                                       emissions.shape[1])
        if not results:
            return Transcript("")
        # `tokens` holds one token per frame, framed by a start and an end space token.
        path = list(results[0].tokens)[1:1 + frames]
        return words_from_tokens(ctc_collapse(path, self.vocab.blank_id), self.vocab,
                                 frame_seconds, offset)


def ctc_collapse(path: list[int], blank_id: int) -> list[tuple[int, int]]:
    """`(token, frame)` pairs of a per-frame CTC path: repeats collapsed, blanks dropped."""
    pairs = []
    previous = None
    for frame, token in enumerate(path):
        if token != blank_id and token != previous:
            pairs.append((int(token), frame))
        previous = token
    return pairs


def _spellable(word: str, vocab: Vocabulary) -> bool:
    try:
        vocab.encode(word)
    except ValueError:
        return False
    return vocab.space_id not in vocab.encode(word)
