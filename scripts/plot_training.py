"""Plot a model's training curve from the `metrics.jsonl` of its run folders.

A model trained in stages (a run, then a run started from its model with `--init`) is plotted
as one curve: give the run folders in order. Top: training CTC loss per target character (a moving
average); bottom: dev WER and CER (greedy) after each epoch. Stage boundaries are dotted.

    pip install -e ".[results]"
    python scripts/plot_training.py runs/bilstm runs/offline --title "offline BiLSTM" \\
        --out results/offline.png

With `--compare`, each run folder is its own curve (named by `--labels`) against steps, with
its dev CER below:
    python scripts/plot_training.py runs/a runs/b --compare --labels "lr 1e-3" "lr 2e-3" \\
        --title "learning rates" --out results/lr.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SMOOTHING = 8  # logged points in the training-loss moving average


def read_stage(run: Path) -> tuple[list[dict], list[dict]]:
    """The step records and the epoch (dev) records of one run folder."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"no {path}: give run folders written by `asr train`")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    epochs = [r for r in records if "dev_loss" in r]
    if not epochs:
        raise SystemExit(f"{path}: no finished epoch yet")
    return [r for r in records if "loss" in r], epochs


def curves(runs: list[Path]) -> tuple[dict[str, np.ndarray], list[float]]:
    """Loss and dev error rates against epochs counted over all stages; the stage starts."""
    xs, losses, dev_x, wer, cer, starts = [], [], [], [], [], []
    offset = 0.0
    for run in runs:
        steps, epochs = read_stage(run)
        steps_per_epoch = epochs[0]["step"]  # every run counts steps and epochs from 0
        starts.append(offset)
        for record in steps:
            xs.append(offset + record["step"] / steps_per_epoch)
            losses.append(record["loss"])
        for record in epochs:
            dev_x.append(offset + record["epoch"])
            wer.append(100 * record["dev_wer"])
            cer.append(100 * record["dev_cer"])
        offset = dev_x[-1]
    return ({"x": np.array(xs), "loss": np.array(losses), "dev_x": np.array(dev_x),
             "wer": np.array(wer), "cer": np.array(cer)}, starts[1:])


def plot(runs: list[Path], title: str, out: Path) -> None:
    data, boundaries = curves(runs)
    kernel = np.ones(SMOOTHING) / SMOOTHING
    smooth = np.convolve(data["loss"], kernel, mode="valid")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(data["x"], data["loss"], color="0.8", linewidth=0.8, label="per logged step")
    top.plot(data["x"][SMOOTHING - 1:], smooth, color="C0", label="moving average")
    top.set_ylabel("training CTC loss / character")
    top.legend(loc="upper right")
    bottom.plot(data["dev_x"], data["wer"], "o-", color="C3", markersize=3, label="dev WER")
    bottom.plot(data["dev_x"], data["cer"], "o-", color="C2", markersize=3, label="dev CER")
    bottom.set_ylabel("greedy error rate (%)")
    bottom.set_xlabel("epoch (all stages)")
    bottom.legend(loc="upper right")
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
        for x in boundaries:
            axis.axvline(x, color="0.4", linestyle=":", linewidth=1)
    save(fig, title, out)
    print(f"wrote {out}: {len(data['dev_x'])} epochs, last dev WER {data['wer'][-1]:.2f}% "
          f"CER {data['cer'][-1]:.2f}%")


def compare(runs: list[Path], labels: list[str], title: str, out: Path) -> None:
    """Each run's smoothed training loss and dev CER against its steps, on shared axes (CER
    moves long before WER does in a run from scratch)."""
    kernel = np.ones(SMOOTHING) / SMOOTHING
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for colour, (run, label) in enumerate(zip(runs, labels, strict=True)):
        steps, epochs = read_stage(run)
        x = np.array([r["step"] for r in steps])
        smooth = np.convolve([r["loss"] for r in steps], kernel, mode="valid")
        top.plot(x[SMOOTHING - 1:], smooth, color=f"C{colour}", label=label)
        bottom.plot([r["step"] for r in epochs], [100 * r["dev_cer"] for r in epochs], "o-",
                    color=f"C{colour}", markersize=3, label=label)
        print(f"{label}: {x[-1]} steps, last dev WER {100 * epochs[-1]['dev_wer']:.2f}% "
              f"CER {100 * epochs[-1]['dev_cer']:.2f}%")
    top.set_ylabel("training CTC loss / character\n(moving average)")
    bottom.set_ylabel("greedy dev CER (%)")
    bottom.set_xlabel("optimiser step")
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
        axis.legend(loc="upper right")
    save(fig, title, out)
    print(f"wrote {out}")


def save(fig: plt.Figure, title: str, out: Path) -> None:
    """Title `fig` and write it to the PNG file `out`, making its folder."""
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path,
                        help="run folders, in training order (with --compare: one per curve)")
    parser.add_argument("--title", default="training curve")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--compare", action="store_true",
                        help="plot each run as its own curve against steps, not as stages")
    parser.add_argument("--labels", nargs="+", metavar="LABEL",
                        help="curve names for --compare (default: the folder names)")
    args = parser.parse_args()
    if args.labels and (not args.compare or len(args.labels) != len(args.runs)):
        parser.error("--labels needs --compare and one label per run folder")
    if args.compare:
        compare(args.runs, args.labels or [run.name for run in args.runs], args.title, args.out)
    else:
        plot(args.runs, args.title, args.out)


if __name__ == "__main__":
    main()
