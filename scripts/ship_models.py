"""Install trained models as the bundled defaults in asr/assets/.

    python scripts/ship_models.py --offline runs/bilstm/model.pt --streaming runs/unilstm/model.pt

The offline model is stored with float16 weights (half the size; loaded back as float32);
the streaming model is exported to ONNX (fp32 and int8) as `asr export` does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asr.checkpoint import load_model, save_model
from asr.defaults import OFFLINE_MODEL, STREAMING_MODEL
from export.onnx_export import export_onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offline", type=Path, help="bidirectional model file (model.pt)")
    parser.add_argument("--streaming", type=Path, help="unidirectional model file (model.pt)")
    args = parser.parse_args()
    if args.offline:
        model = load_model(args.offline)
        save_model(model, OFFLINE_MODEL, half=True, source=str(args.offline))
        print(f"{OFFLINE_MODEL}: {OFFLINE_MODEL.stat().st_size / 1e6:.1f} MB")
    if args.streaming:
        for path in export_onnx(load_model(args.streaming), STREAMING_MODEL.parent):
            print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
