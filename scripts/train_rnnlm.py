#!/usr/bin/env python3
"""Train the word LSTM LM (`asr.rnnlm`) that rescores the decoder's n-best lists.

Its words are the KenLM model's (`<lm>.words.txt`, as `scripts/build_lm.py` writes them),
sorted by their frequency in the corpus. The corpus sentences are shuffled once and read as
one stream, `--batch` streams side by side, `--steps` words at a time; the learning rate
falls on a cosine to zero over `--epochs`. A checkpoint is written every `--save-minutes`,
and `--resume` goes on from it; the LM file for `RNNLM` is written at the end.

Examples:
  python scripts/train_rnnlm.py --out asr/assets/lm.rnn.npz --exclude dev.jsonl
  python scripts/train_rnnlm.py --out small.npz --epochs 0.1 --hidden 128   # a quick try
"""

from __future__ import annotations

import argparse
import collections
import math
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # build_lm

from build_lm import DEFAULT_CORPUS, read_lines, reference_sentences  # noqa: E402

from asr.beam import load_words  # noqa: E402
from asr.corpora import CorpusError  # noqa: E402
from asr.rnnlm import END, UNKNOWN, LMDims  # noqa: E402
from asr.rnnlm_torch import WordLSTM, save_npz  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORDS = REPO_ROOT / "asr" / "assets" / "lm.bin.words.txt"


def vocabulary(lines: list[str], words_path: Path) -> list[str]:
    """`</s>`, `<unk>`, then the lexicon's words, the most frequent in `lines` first."""
    counts = collections.Counter(w for line in lines for w in line.split())
    return [END, UNKNOWN, *sorted(load_words(words_path), key=lambda w: -counts[w])]


def stream_ids(lines: list[str], words: list[str], seed: int) -> torch.Tensor:
    """The shuffled sentences as one stream of word ids, each sentence followed by `</s>`."""
    index = {w: i for i, w in enumerate(words)}
    unknown, end = index[UNKNOWN], index[END]
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    ids: list[int] = []
    for k in order:
        ids += [index.get(w, unknown) for w in lines[k].split()]
        ids.append(end)
    return torch.tensor(ids)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="LM file to write (.npz)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="one normalised sentence a line, .gz or plain "
                             "(default: %(default)s)")
    parser.add_argument("--words", type=Path, default=DEFAULT_WORDS,
                        help="the n-gram LM's word list (default: %(default)s)")
    parser.add_argument("--exclude", type=Path, nargs="+", default=[], metavar="TEST_SET",
                        help="leave out corpus lines equal to a reference of these test sets")
    parser.add_argument("--epochs", type=float, default=2.0, help="passes over the corpus "
                        "(default: %(default)s)")
    parser.add_argument("--hidden", type=int, default=512, help="LSTM units (default: 512)")
    parser.add_argument("--embed", type=int, default=256,
                        help="vector size of the most frequent words (default: 256)")
    parser.add_argument("--batch", type=int, default=32, help="streams (default: 32)")
    parser.add_argument("--steps", type=int, default=40, help="words per stream and update "
                        "(default: 40)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate "
                        "(default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-minutes", type=float, default=10.0,
                        help="checkpoint interval (default: 10)")
    parser.add_argument("--resume", action="store_true",
                        help="go on from <out>.ckpt if it is there")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if not args.corpus.is_file():
        sys.exit(f"[train_rnnlm] corpus not found: {args.corpus}")
    if not args.words.is_file():
        sys.exit(f"[train_rnnlm] word list not found: {args.words} (scripts/build_lm.py "
                 "writes one beside the n-gram)")
    try:
        exclude = reference_sentences(args.exclude)
    except CorpusError as error:
        sys.exit(f"[train_rnnlm] --exclude: {error}")
    lines = [line.strip() for line in read_lines(args.corpus, exclude) if line.strip()]
    words = vocabulary(lines, args.words)
    data = stream_ids(lines, words, args.seed)
    dims = LMDims(len(words), embed=args.embed, hidden=args.hidden)
    dims = replace(dims, cutoffs=tuple(c for c in dims.cutoffs if c < len(words) - 1))
    model = WordLSTM(dims)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    columns = (len(data) - 1) // args.batch
    inputs = data[:columns * args.batch].view(args.batch, columns)
    targets = data[1:columns * args.batch + 1].view(args.batch, columns)
    per_epoch = columns // args.steps
    total = max(1, round(args.epochs * per_epoch))
    checkpoint = args.out.with_name(args.out.name + ".ckpt")
    step = 0
    if args.resume and checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        step = saved["step"]
    print(f"[train_rnnlm] {len(lines)} sentences, {len(data)} words, vocabulary {len(words)}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
          f"{total} updates", file=sys.stderr)
    state = None
    average = None
    saved_at = time.monotonic()
    model.train()
    with tqdm(total=total, initial=step, unit="update", file=sys.stderr) as bar:
        while step < total:
            column = (step % per_epoch) * args.steps
            if column == 0:
                state = None
            for group in optimizer.param_groups:
                group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss, state = model(inputs[:, column:column + args.steps],
                                targets[:, column:column + args.steps], state)
            state = tuple(s.detach() for s in state)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            average = loss.item() if average is None else 0.98 * average + 0.02 * loss.item()
            bar.update()
            bar.set_postfix(perplexity=f"{math.exp(average):.0f}")
            if time.monotonic() - saved_at > args.save_minutes * 60 or step == total:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "step": step}, checkpoint)
                saved_at = time.monotonic()
    model.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(model, words, args.out)
    print(f"[train_rnnlm] wrote {args.out} ({args.out.stat().st_size / 1e6:.3g} MB)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
