"""CTC beam search with an optional KenLM word n-gram, via flashlight-text.

With an LM the search is constrained to the LM's vocabulary (`LexiconDecoder`): each word is
spelled as its characters followed by the space token, so words are always separated by a
space.  Without one it is a plain CTC prefix beam search over characters
(`LexiconFreeDecoder` with a zero LM).  Build an LM with `scripts/build_lm.py`.  With the LM,
hypotheses that reach the same search state are merged by adding their probabilities
(`log_add`): a word sequence scores all its CTC alignments, not only its best one.

The lexicon's pieces (the spellable words, their token ids and unigram scores) are computed
once per LM and word list and cached in `asr.defaults.cache_dir()` (keyed by both files' path,
size and modification time, and the vocabulary), so later starts only insert them into the
trie.

An LM file `<lm>.rnn.npz` beside the n-gram (a word LSTM, `asr.rnnlm`, trained with
`scripts/train_rnnlm.py`) rescores the search's best `rescore_nbest` word sequences: each
gets `rescore_weight` times its LSTM log-probability (log10) and `rescore_word_score` per word
added to its score.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from flashlight.lib.text.decoder import (
    CriterionType,
    DecodeResult,
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
from asr.defaults import (
    BEAM_SIZE,
    BEAM_THRESHOLD,
    LM_WEIGHT,
    RESCORE_NBEST,
    RESCORE_WEIGHT,
    RESCORE_WORD_SCORE,
    WORD_SCORE,
    cache_dir,
)
from asr.rnnlm import RNNLM
from asr.text import Vocabulary

if TYPE_CHECKING:
    from flashlight.lib.text.decoder.kenlm import KenLM

UNK = "<unk>"
_SPECIAL_WORDS = frozenset({"<s>", "</s>", UNK})
LEXICON_CACHE_VERSION = 1  # bump when the cached pieces change meaning


def load_words(path: str | Path) -> list[str]:
    """Words of a word list, one per line (blank lines and <s>, </s>, <unk> skipped)."""
    with open(path, encoding="utf-8") as f:
        return [w for w in (line.strip() for line in f) if w and w not in _SPECIAL_WORDS]


class BeamSearchDecoder:
    """CTC beam-search decoder; with `lm_path`, a lexicon-constrained KenLM decoder.

    `lm_path` is a KenLM binary or ARPA file; `words_path` (default `<lm_path>.words.txt`)
    lists its words, one per line.  `lm_weight` scales LM log-probabilities (natural log),
    `word_score` is added per word (and `unk_score` per out-of-lexicon word, -inf to forbid
    them), `sil_score` per space token; the `rescore_*` settings are the word LSTM's (module
    docstring).  `asr.defaults.Decoding` holds the settings recognisers pass on.  Not
    thread-safe: use one decoder per thread.
    """

    def __init__(self, vocab: Vocabulary, lm_path: str | Path | None = None,
                 words_path: str | Path | None = None, beam_size: int = BEAM_SIZE,
                 beam_threshold: float = BEAM_THRESHOLD, lm_weight: float = LM_WEIGHT,
                 word_score: float = WORD_SCORE,
                 unk_score: float = -math.inf, sil_score: float = 0.0,
                 beam_size_token: int | None = None, rescore_path: str | Path | None = None,
                 rescore_nbest: int = RESCORE_NBEST, rescore_weight: float = RESCORE_WEIGHT,
                 rescore_word_score: float = RESCORE_WORD_SCORE) -> None:
        self.vocab = vocab
        self.lm_path = None if lm_path is None else Path(lm_path)
        self.rescorer: RNNLM | None = None
        self.rescore_nbest, self.rescore_word_score = rescore_nbest, rescore_word_score
        self.rescore_weight = rescore_weight / math.log(10)  # KenLM scores are log10
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

        lexicon = _Lexicon.cached(self.lm_path, words_path, vocab)
        self.words = lexicon.words
        self.word_dict = Dictionary()
        for word in [UNK, *self.words]:  # word i has id i + 1
            self.word_dict.add_entry(word)
        unk_id = self.word_dict.get_index(UNK)
        self.word_dict.set_default_index(unk_id)
        self._lm = KenLM(str(self.lm_path), self.word_dict)
        if lexicon.scores is None:
            lexicon.score(self._lm)
            lexicon.save(self.lm_path, words_path, vocab)
        self._trie = lexicon.trie(vocab)
        options = LexiconDecoderOptions(
            beam_size=beam_size, beam_size_token=beam_size_token, beam_threshold=beam_threshold,
            lm_weight=lm_weight, word_score=word_score, unk_score=unk_score, sil_score=sil_score,
            log_add=True, criterion_type=CriterionType.CTC)
        self._decoder = LexiconDecoder(options, self._trie, self._lm, vocab.space_id,
                                       vocab.blank_id, unk_id, [], False)
        if rescore_path is None and Path(f"{lm_path}.rnn.npz").is_file():
            rescore_path = Path(f"{lm_path}.rnn.npz")
        if rescore_path is not None and rescore_weight:
            self.rescorer = RNNLM(rescore_path)

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
        best = results[0] if self.rescorer is None else self._rescored(results)
        # `tokens` holds one token per frame, framed by a start and an end space token.
        path = list(best.tokens)[1:1 + frames]
        return words_from_tokens(ctc_collapse(path, self.vocab.blank_id), self.vocab,
                                 frame_seconds, offset, log_probs=emissions)

    def _rescored(self, results: list[DecodeResult]) -> DecodeResult:
        """The best of the first `rescore_nbest` distinct word sequences of the search's
        results (best first), with the word LSTM's score added."""
        candidates: dict[tuple[int, ...], DecodeResult] = {}
        for result in results:
            candidates.setdefault(tuple(w for w in result.words if w >= 0), result)
            if len(candidates) == self.rescore_nbest:
                break
        texts = [" ".join(self.words[w - 1] for w in words) for words in candidates]
        lengths = np.array([len(words) for words in candidates])
        bonus = (self.rescorer.score(texts) * self.rescore_weight
                 + self.rescore_word_score * lengths).tolist()
        return max(zip(candidates.values(), bonus, strict=True),
                   key=lambda candidate: candidate[0].score + candidate[1])[0]


def ctc_collapse(path: list[int], blank_id: int) -> list[tuple[int, int]]:
    """`(token, frame)` pairs of a per-frame CTC path: repeats collapsed, blanks dropped."""
    pairs = []
    previous = None
    for frame, token in enumerate(path):
        if token != blank_id and token != previous:
            pairs.append((int(token), frame))
        previous = token
    return pairs


@dataclass
class _Lexicon:
    """The LM words the vocabulary can spell, their spellings (token ids, then the space) as
    one flat array cut at `ends`, and their unigram LM scores (None until scored)."""

    words: list[str]
    spellings: np.ndarray  # int32
    ends: np.ndarray  # int64, where each word's spelling ends in `spellings`
    scores: np.ndarray | None = None  # float32

    @classmethod
    def cached(cls, lm_path: Path, words_path: Path, vocab: Vocabulary) -> _Lexicon:
        """The cached lexicon of these files, else one spelled from the word list (unscored)."""
        try:
            with np.load(_cache_path(lm_path, words_path, vocab), allow_pickle=False) as data:
                words = data["words"].tobytes().decode("utf-8").split("\n")
                lexicon = cls(words, data["spellings"], data["ends"], data["scores"])
            if len(words) == len(lexicon.ends) == len(lexicon.scores):
                return lexicon
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # none, or damaged
            pass
        index = {token: i for i, token in enumerate(vocab.tokens)
                 if i not in (vocab.space_id, vocab.blank_id)}
        words = [w for w in dict.fromkeys(load_words(words_path)) if all(c in index for c in w)]
        spellings = [[index[c] for c in word] + [vocab.space_id] for word in words]
        ends = np.cumsum([len(s) for s in spellings], dtype=np.int64)
        flat = np.fromiter((t for s in spellings for t in s), np.int32, int(ends[-1]) if words
                           else 0)
        return cls(words, flat, ends)

    def score(self, lm: KenLM) -> None:
        """Each word's unigram score (word i has id i + 1 in the LM's dictionary)."""
        start = lm.start(False)
        self.scores = np.array([lm.score(start, i + 1)[1] for i in range(len(self.words))],
                               dtype=np.float32)

    def save(self, lm_path: Path, words_path: Path, vocab: Vocabulary) -> None:
        """Write the cache atomically; a cache that cannot be written is simply not used."""
        path = _cache_path(lm_path, words_path, vocab)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
                np.savez(f, words=np.frombuffer("\n".join(self.words).encode("utf-8"), np.uint8),
                         spellings=self.spellings, ends=self.ends, scores=self.scores)
            os.replace(f.name, path)
        except OSError:
            pass

    def trie(self, vocab: Vocabulary) -> Trie:
        """Spelling trie, each node scored by its best word's unigram LM score."""
        trie = Trie(len(vocab), vocab.space_id)
        flat, ends = self.spellings.tolist(), [0, *self.ends.tolist()]
        for word_id, score in enumerate(self.scores.tolist(), start=1):
            trie.insert(flat[ends[word_id - 1] : ends[word_id]], word_id, score)
        trie.smear(SmearingMode.MAX)
        return trie


def _cache_path(lm_path: Path, words_path: Path, vocab: Vocabulary) -> Path:
    """The cache file of an LM and word list: changes with either file or the vocabulary."""
    key = [LEXICON_CACHE_VERSION, *vocab.tokens]
    for path in (lm_path, words_path):
        info = path.stat()
        key += [str(path.resolve()), info.st_size, info.st_mtime_ns]
    digest = hashlib.sha256(repr(key).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return cache_dir() / f"lexicon-{digest}.npz"
