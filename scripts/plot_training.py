"""Plot a model's training curve from the `metrics.jsonl` of its run folders.

A model trained in stages (a run, then a run started from its model with `--init`) is plotted
as one curve: give the run folders in order. Top: training CTC loss per target character (a moving
average); bottom: dev WER and CER (greedy) after each epoch. Stage boundaries are dotted.

    pip install -e ".[results]"
    python scripts/plot_training.py runs/bilstm runs/offline --title "offline BiLSTM" \\
        --out results/offline.png
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
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}: {len(data['dev_x'])} epochs, last dev WER {data['wer'][-1]:.2f}% "
          f"CER {data['cer'][-1]:.2f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders, in training order")
    parser.add_argument("--title", default="training curve")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    args = parser.parse_args()
    plot(args.runs, args.title, args.out)


if __name__ == "__main__":
    main()
