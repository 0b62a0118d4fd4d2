#!/usr/bin/env python3
"""Build a pruned, quantised KenLM word n-gram for the beam-search decoder.

Steps:
  1. Compile KenLM's `lmplz` and `build_binary` from the kenlm sdist on PyPI (once; the
     binaries are cached in --build-dir and reused on later runs).
  2. Count and prune an n-gram model of a text corpus with `lmplz` (ARPA, in a temp dir).
  3. Convert it to a quantised trie with `build_binary` at --out, and write the word list
     (the model's unigrams) to `<out>.words.txt`, which the lexicon decoder needs.

The corpus holds one normalised sentence a line (see `asr.text.normalize_text`), plain or
gzip-compressed.  Needs cmake, a C++ compiler and the Boost, zlib, bz2 and lzma headers.

Examples:
  python scripts/build_lm.py --out models/lm.bin            # 4-gram, about 15 MB
  python scripts/build_lm.py --out small.bin --order 3 --prune 0 1 --vocab-size 20000
  python scripts/build_lm.py --out fair.bin --exclude dev.jsonl   # not scored on seen text

Then decode with it (the decoder also reads models/lm.bin.words.txt):
  asr.beam.BeamSearchDecoder(asr.text.Vocabulary(), "models/lm.bin")
"""

from __future__ import annotations

import argparse
import collections
import gzip
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from asr.corpora import CorpusError, read_corpus

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "data" / "text" / "lm_corpus.txt.gz"
DEFAULT_BUILD_DIR = Path("~/.cache/lstm-asr/kenlm").expanduser()
KENLM_VERSION = "0.3.0"
BINARIES = ("lmplz", "build_binary")
SPECIAL_WORDS = {"<s>", "</s>", "<unk>"}


def megabytes(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.3g} MB"


def log(message: str) -> None:
    print(f"[build_lm] {message}", file=sys.stderr, flush=True)


def run(command: list[str], **kwargs) -> None:
    log("$ " + " ".join(map(str, command)))
    subprocess.run(command, check=True, **kwargs)


def build_kenlm(build_dir: Path, jobs: int = 2) -> Path:
    """Compile `lmplz` and `build_binary` into `build_dir/bin` unless they are already there."""
    bin_dir = build_dir / "bin"
    if all((bin_dir / name).is_file() for name in BINARIES):
        log(f"using cached KenLM binaries in {bin_dir}")
        return bin_dir
    for tool in ("cmake", "make"):
        if shutil.which(tool) is None:
            sys.exit(f"[build_lm] {tool} is needed to compile KenLM; install it first")
    build_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kenlm-src-") as tmp:
        tmp_dir = Path(tmp)
        log(f"downloading the kenlm=={KENLM_VERSION} source distribution")
        # --no-build-isolation: otherwise pip also compiles kenlm's build requirements (cmake!)
        # from source just to read the package metadata.
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--no-build-isolation", f"kenlm=={KENLM_VERSION}", "-d", str(tmp_dir)])
        archive = next(tmp_dir.glob("kenlm-*.tar.gz"))
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12
                tar.extractall(tmp_dir, filter="data")
            else:
                tar.extractall(tmp_dir)  # a PyPI sdist we just downloaded
        source = next(p for p in tmp_dir.iterdir() if p.is_dir())
        cmake_dir = tmp_dir / "build"
        cmake_dir.mkdir()
        log(f"compiling lmplz and build_binary with {jobs} jobs (about a minute)")
        run(["cmake", "-DCMAKE_BUILD_TYPE=Release", str(source)], cwd=cmake_dir)
        run(["make", f"-j{jobs}", *BINARIES], cwd=cmake_dir)
        bin_dir.mkdir(exist_ok=True)
        for name in BINARIES:
            shutil.copy2(cmake_dir / "bin" / name, bin_dir / name)
    log(f"cached KenLM binaries in {bin_dir}")
    return bin_dir


def read_lines(corpus: Path, exclude: frozenset[str] = frozenset()) -> Iterator[str]:
    """Lines of a plain or gzip-compressed text file, but those that are (stripped) in
    `exclude`."""
    opener = gzip.open if corpus.suffix == ".gz" else open
    with opener(corpus, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip() not in exclude:
                yield line


def reference_sentences(test_sets: list[Path]) -> frozenset[str]:
    """The (normalised) reference texts of test sets: anything `asr.corpora.read_corpus` reads,
    manifest .jsonl, LibriSpeech folder or Common Voice .tsv."""
    return frozenset(u.text for path in test_sets for u in read_corpus(path))


def write_vocab_limit(corpus: Path, size: int, path: Path,
                      exclude: frozenset[str] = frozenset()) -> int:
    """Write the `size` most frequent corpus words to `path`; returns the corpus word count."""
    counts: collections.Counter[str] = collections.Counter()
    for line in read_lines(corpus, exclude):
        counts.update(line.split())
    path.write_text("\n".join(w for w, _ in counts.most_common(size)) + "\n", encoding="utf-8")
    log(f"kept {min(size, len(counts))} of {len(counts)} word types")
    return sum(counts.values())


def run_lmplz(lmplz: Path, corpus: Path, arpa: Path, order: int, prune: list[int], memory: str,
              tmp_dir: Path, limit_vocab_file: Path | None, discount_fallback: bool,
              exclude: frozenset[str] = frozenset()) -> None:
    """Stream the corpus, less the `exclude` lines, into lmplz and write a pruned ARPA model."""
    command = [str(lmplz), "-o", str(order), "-S", memory, "-T", str(tmp_dir),
               "--prune", *map(str, prune), "--arpa", str(arpa)]
    if limit_vocab_file is not None:
        command += ["--limit_vocab_file", str(limit_vocab_file)]
    if discount_fallback:
        command.append("--discount_fallback")
    log("$ " + " ".join(command) + f" < {corpus}")
    with subprocess.Popen(command, stdin=subprocess.PIPE, text=True, encoding="utf-8") as proc:
        assert proc.stdin is not None
        try:
            for line in read_lines(corpus, exclude):
                proc.stdin.write(line)
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()
    if proc.returncode != 0:
        sys.exit(f"[build_lm] lmplz failed with exit status {proc.returncode}")


def arpa_unigrams(arpa: Path) -> list[str]:
    """Words of the ARPA model's unigram section, without <s>, </s> and <unk>."""
    words: list[str] = []
    in_unigrams = False
    with open(arpa, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line == "\\1-grams:":
                in_unigrams = True
            elif in_unigrams:
                if not line or line.startswith("\\"):
                    break
                word = line.split("\t")[1]
                if word not in SPECIAL_WORDS:
                    words.append(word)
    return words


def build_binary(tool: Path, arpa: Path, out: Path, bits: int) -> None:
    """Convert ARPA to a quantised trie: `bits` for probabilities and backoffs, `bits` for
    pointer compression."""
    run([str(tool), "-q", str(bits), "-b", str(bits), "trie", str(arpa), str(out)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="text corpus, one normalised sentence a line, .gz or plain "
                             "(default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("lm.bin"),
                        help="KenLM binary to write; the word list goes to <out>.words.txt "
                             "(default: %(default)s)")
    parser.add_argument("--order", type=int, default=4, help="n-gram order (default: 4)")
    parser.add_argument("--prune", type=int, nargs="+", default=[0, 0, 1, 1], metavar="N",
                        help="lmplz count thresholds per order: drop n-grams seen N times or "
                             "fewer; the last value repeats for higher orders. Unigrams must "
                             "be 0 (default: 0 0 1 1; about 15 MB for a 6M-word corpus, "
                             "0 1 1 2 about 9 MB, 0 0 0 1 about 34 MB)")
    parser.add_argument("--exclude", type=Path, nargs="+", default=[], metavar="TEST_SET",
                        help="leave out corpus lines equal to a reference of these test sets "
                             "(manifest .jsonl, LibriSpeech folder or Common Voice .tsv), so "
                             "that the LM is not scored on sentences it was built from")
    parser.add_argument("--vocab-size", type=int, default=None, metavar="N",
                        help="keep only the N most frequent words; n-grams with other words "
                             "are dropped (lmplz --limit_vocab_file)")
    parser.add_argument("--memory", default="20%",
                        help="lmplz sort memory, e.g. 20%% or 1G (default: %(default)s)")
    parser.add_argument("--bits", type=int, default=8,
                        help="quantisation bits for probabilities/backoffs (default: 8)")
    parser.add_argument("--discount_fallback", "--discount-fallback", action="store_true",
                        help="let lmplz use fallback discounts; needed for tiny corpora")
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR,
                        help="where the compiled KenLM binaries are cached "
                             "(default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="make -j for compiling (default: 2)")
    args = parser.parse_args(argv)
    if args.prune[0] != 0:
        parser.error("--prune: unigrams cannot be pruned, the first value must be 0")
    args.prune = (args.prune + [args.prune[-1]] * args.order)[:args.order]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.corpus.is_file():
        sys.exit(f"[build_lm] corpus not found: {args.corpus}")
    start = time.monotonic()
    try:
        exclude = reference_sentences(args.exclude)
    except CorpusError as error:
        sys.exit(f"[build_lm] --exclude: {error}")
    if exclude:
        dropped = sum(1 for line in read_lines(args.corpus) if line.strip() in exclude)
        log(f"leaving out {dropped} corpus lines equal to one of {len(exclude)} test sentences")
    bin_dir = build_kenlm(args.build_dir.expanduser(), args.jobs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-lm-") as tmp:
        tmp_dir = Path(tmp)
        limit_file = None
        if args.vocab_size:
            limit_file = tmp_dir / "vocab.txt"
            words = write_vocab_limit(args.corpus, args.vocab_size, limit_file, exclude)
            log(f"corpus has {words} words")
        arpa = tmp_dir / "lm.arpa"
        log(f"counting a {args.order}-gram model, prune thresholds {args.prune}")
        run_lmplz(bin_dir / "lmplz", args.corpus, arpa, args.order, args.prune, args.memory,
                  tmp_dir, limit_file, args.discount_fallback, exclude)
        log(f"ARPA model: {megabytes(arpa)}")
        words_path = Path(f"{args.out}.words.txt")
        words = arpa_unigrams(arpa)
        words_path.write_text("\n".join(words) + "\n", encoding="utf-8")
        log(f"wrote {len(words)} words to {words_path}")
        build_binary(bin_dir / "build_binary", arpa, args.out, args.bits)
    log(f"wrote {args.out}: {megabytes(args.out)} in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
