"""`asr`: train, evaluate and run LSTM-CTC speech recognisers (a thin layer over the Python API)."""

from __future__ import annotations

import argparse
import sys

from asr import __version__


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model on one or more corpora",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train an LSTM-CTC model with CTC loss. Uses CUDA with bf16 autocast when "
        "available, else the CPU. For several GPUs launch with torchrun, e.g. "
        "`torchrun --nproc_per_node 4 -m asr train ...`. A killed or time-limited run continues "
        "with --resume. Corpora: manifest .jsonl, LibriSpeech-style folder, Common Voice .tsv.")
    p.add_argument("train", nargs="+", help="training corpora")
    p.add_argument("--out", required=True, help="output folder (model.pt, last.pt, metrics.jsonl)")
    p.add_argument("--dev", nargs="*", default=[],
                   help="dev corpora; without them --dev-fraction of the speakers is held out")
    p.add_argument("--dev-fraction", type=float, default=0.05)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if present")
    p.add_argument("--init", help="start from this model file's weights (fine-tuning)")
    g = p.add_argument_group("model")
    g.add_argument("--hidden", type=int, default=256, help="LSTM units per direction")
    g.add_argument("--layers", type=int, default=3)
    g.add_argument("--stack", type=int, default=3, help="10 ms frames per LSTM step")
    g.add_argument("--unidirectional", action="store_true", help="streaming (causal) model")
    g.add_argument("--dropout", type=float, default=0.1)
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=30)
    g.add_argument("--batch-seconds", type=float, default=300.0,
                   help="padded audio per batch (per GPU)")
    g.add_argument("--max-duration", type=float, default=30.0,
                   help="leave out longer utterances (seconds)")
    g.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    g.add_argument("--warmup-steps", type=int, default=500)
    g.add_argument("--clip", type=float, default=5.0, help="gradient norm clipping")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("augmentation")
    g.add_argument("--speed-perturb", action="store_true", help="speeds 0.9, 1.0 and 1.1")
    g.add_argument("--noise-prob", type=float, default=0.0, help="share of utterances with noise")
    g.add_argument("--noise-dir", help="noise recordings (default: coloured synthetic noise)")
    g.add_argument("--snr", type=float, nargs=2, default=(5.0, 30.0), metavar=("LOW", "HIGH"))
    g.add_argument("--spec-augment", action="store_true",
                   help="2 frequency masks (up to 15 bins) and 2 time masks (up to 5%%)")
    g = p.add_argument_group("running")
    g.add_argument("--workers", type=int, default=2, help="data-loading processes")
    g.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    g.add_argument("--max-minutes", type=float, default=0.0,
                   help="save and stop after this many minutes (0: no limit)")
    g.add_argument("--save-minutes", type=float, default=5.0, help="checkpoint interval")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from asr.augment import AugmentConfig
    from asr.model import ModelDims
    from asr.train import TrainConfig, train

    spec = 2 if args.spec_augment else 0
    config = TrainConfig(
        train=args.train, out_dir=args.out, dev=args.dev, dev_fraction=args.dev_fraction,
        dims=ModelDims(hidden=args.hidden, layers=args.layers, stack=args.stack,
                       bidirectional=not args.unidirectional, dropout=args.dropout),
        augment=AugmentConfig(speeds=(0.9, 1.0, 1.1) if args.speed_perturb else (),
                              noise_prob=args.noise_prob, noise_dir=args.noise_dir,
                              snr_db=tuple(args.snr), freq_masks=spec, time_masks=spec),
        epochs=args.epochs, batch_seconds=args.batch_seconds, max_duration=args.max_duration,
        lr=args.lr, warmup_steps=args.warmup_steps, clip=args.clip, seed=args.seed,
        workers=args.workers, threads=args.threads, max_minutes=args.max_minutes,
        save_minutes=args.save_minutes, init=args.init)
    progress = train(config, resume=args.resume)
    if progress.epoch < config.epochs:
        print(f"stopped at epoch {progress.epoch + 1}, step {progress.step}; "
              f"run again with --resume to continue", file=sys.stderr)
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a unidirectional model to streaming ONNX (fp32 and int8)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Write DIR/model.onnx and DIR/model.int8.onnx: raw 16 kHz audio in, CTC "
        "log-probabilities out, LSTM and frontend state as explicit inputs/outputs, vocabulary "
        "and settings in the metadata. Checks chunked-ONNX against PyTorch afterwards.")
    p.add_argument("checkpoint", help="a unidirectional model file (asr train --unidirectional)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--chunk-ms", type=int, default=160, help="recommended chunk, in metadata")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 copy")
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    import numpy as np

    from asr.checkpoint import load_model
    from export.onnx_export import export_onnx
    from export.parity import max_abs_diff, onnx_session, pad_to_steps, run_chunks, torch_log_probs

    model = load_model(args.checkpoint)
    paths = export_onnx(model, args.out, chunk_ms=args.chunk_ms, int8=not args.no_int8)
    audio = pad_to_steps(np.random.default_rng(0).uniform(-0.3, 0.3, 48000), model)
    reference = torch_log_probs(model, audio)
    hop = model.features.hop_length
    for path in paths:
        diff = max_abs_diff(run_chunks(onnx_session(path), audio, [hop, 7 * hop, 25 * hop]),
                            reference)
        print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, chunked vs PyTorch max |diff| "
              f"{diff:.2e}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_export(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
