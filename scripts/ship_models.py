"""Install trained models as the bundled defaults in asr/assets/.

    python scripts/ship_models.py --offline runs/bilstm/model.pt --streaming runs/unilstm/model.pt

Given several model files, ships the mean of their weights (`asr.model.average`: say the
shipped model and a fine-tune of it, which has often beaten both):

    python scripts/ship_models.py --offline runs/offline14/model.pt asr/assets/offline.pt

A file named twice counts twice (a weighted mean).

Each checkpoint is stored with float16 weights (half the size; loaded back as float32;
`asr train --init` starts from it) and exported from those weights to ONNX (fp32 and int8),
which is what recognition runs: the offline model as one graph over whole recordings, the
streaming model as `asr export` does.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from asr.checkpoint import load_model, save_model
from asr.defaults import (
    OFFLINE_MODEL,
    OFFLINE_ONNX,
    OFFLINE_ONNX_INT8,
    STREAMING_CHECKPOINT,
    STREAMING_MODEL,
)
from asr.model import CTCModel, average
from export.onnx_export import export_offline_onnx, export_onnx


def mean_model(checkpoints: list[Path]) -> CTCModel:
    """The model in one file, or the mean of several."""
    return average([load_model(path) for path in checkpoints])


def source(checkpoints: list[Path]) -> str:
    """Where the shipped weights came from, for the model file's metadata."""
    names = " ".join(map(str, checkpoints))
    return names if len(checkpoints) == 1 else f"mean of {names}"


def ship_offline(checkpoints: list[Path]) -> list[Path]:
    """The bundled offline checkpoint and its ONNX pair, from `checkpoints` (their mean)."""
    save_model(mean_model(checkpoints), OFFLINE_MODEL, half=True, source=source(checkpoints))
    with tempfile.TemporaryDirectory() as folder:
        # exported from the float16-stored weights, exactly as shipped
        fp32, int8 = export_offline_onnx(load_model(OFFLINE_MODEL), folder)
        shutil.move(fp32, OFFLINE_ONNX)
        shutil.move(int8, OFFLINE_ONNX_INT8)
    return [OFFLINE_MODEL, OFFLINE_ONNX, OFFLINE_ONNX_INT8]


def ship_streaming(checkpoints: list[Path]) -> list[Path]:
    """The bundled streaming checkpoint and its ONNX pair, from `checkpoints` (their mean)."""
    save_model(mean_model(checkpoints), STREAMING_CHECKPOINT, half=True,
               source=source(checkpoints))
    return [STREAMING_CHECKPOINT, *export_onnx(load_model(STREAMING_CHECKPOINT),
                                               STREAMING_MODEL.parent)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offline", type=Path, nargs="+", metavar="MODEL",
                        help="bidirectional model file(s) (model.pt); several: their mean")
    parser.add_argument("--streaming", type=Path, nargs="+", metavar="MODEL",
                        help="unidirectional model file(s) (model.pt); several: their mean, "
                        "reading as far ahead as the furthest")
    args = parser.parse_args()
    paths = ship_offline(args.offline) if args.offline else []
    if args.streaming:
        paths += ship_streaming(args.streaming)
    for path in paths:
        print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
