"""`asr`: train, evaluate and run LSTM-CTC speech recognisers (a thin layer over the Python API)."""

from __future__ import annotations

import argparse
import sys

from asr import __version__
from asr.defaults import (
    OFFLINE_ONNX,
    OFFLINE_ONNX_INT8,
    PRECISIONS,
    STREAMING_MODEL,
    STREAMING_MODEL_INT8,
    THREADS,
    THREADS_HELP,
    add_lm_options,
    lm_options,
)
from asr.formats import FORMATS, printable
from streaming.listen import add_listen_parser
from streaming.server import add_serve_parser


def _add_decoding_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and decoding")
    g.add_argument("--model", help=f"model file: an offline ONNX model (default: the bundled "
                   f"{OFFLINE_ONNX.name}) or an `asr train` model.pt (needs the train extra); "
                   "with --streaming a streaming ONNX model (default: the bundled one)")
    g.add_argument("--streaming", action="store_true",
                   help="run the streaming (unidirectional ONNX) engine instead")
    g.add_argument("--int8", action="store_true",
                   help=f"the bundled int8 model ({OFFLINE_ONNX_INT8.name}, or the streaming "
                   "one with --streaming): smaller and about 1.5 times as fast, transcripts nearly "
                   "the same")
    add_lm_options(g, "; with --streaming it decodes final results")
    g.add_argument("--threads", type=int, default=THREADS, metavar="N", help=THREADS_HELP)


def _engine(args: argparse.Namespace):
    """The chosen recogniser (`asr.transcribe.Recognizer` or a `StreamingRecognizer`)."""
    if args.int8 and args.model:
        raise ValueError("--int8 picks the bundled int8 model; with --model give the int8 "
                         "ONNX file itself")
    if args.threads < 0:
        raise ValueError(f"--threads must be 0 (one per core) or more, not {args.threads}")
    if args.streaming:
        from streaming.engine import StreamingRecognizer

        model = args.model or (STREAMING_MODEL_INT8 if args.int8 else STREAMING_MODEL)
        return StreamingRecognizer(model, threads=args.threads, **lm_options(args))
    from asr.transcribe import Recognizer

    model = args.model or (OFFLINE_ONNX_INT8 if args.int8 else OFFLINE_ONNX)
    return Recognizer(model, threads=args.threads, **lm_options(args))


def _add_transcribe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transcribe", help="transcribe audio files",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Transcribe recordings (wav, flac, ogg/opus, mp3, ...; any rate and channel "
        "count). The model is loaded once and files are batched. A file that cannot be read (or "
        "whose output cannot be written) is reported on stderr, the others are still "
        "transcribed, and the exit status is 1; bad options exit with 2. Bytes of file names "
        "that are not UTF-8 are shown as \\xNN in the output.",
        epilog="examples:\n  asr transcribe talk.wav\n  asr transcribe *.flac --format jsonl"
        "\n  asr transcribe film.mp3 --format srt > film.srt\n"
        "  asr transcribe call.wav --streaming --int8")
    p.add_argument("files", nargs="+", help="audio files")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="text: the transcript (path<TAB>text for several files); json: one "
                   "array of objects, jsonl: one object a line, each with path, text, duration "
                   "and words with start/end seconds; srt/vtt: subtitles")
    p.add_argument("--output-dir", help="write one file per input into this folder instead of "
                   "stdout, and list each on stderr: STEM.EXT with EXT txt, json (one object), "
                   "jsonl, srt or vtt; inputs that share a stem keep their whole name "
                   "(a/x.wav, b/x.flac: x.wav.txt, x.flac.txt), a name given twice gets a "
                   "number (x.wav.2.txt). Needed for srt/vtt with several files")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr (there "
                   "is none when stderr is not a terminal, or for one file)")
    _add_decoding_options(p)
    p.set_defaults(run=_run_transcribe)


def _run_transcribe(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from asr.formats import output_names, render, to_dict
    from asr.results import FileError, FileResult

    several = len(args.files) > 1
    if several and args.format in ("srt", "vtt") and not args.output_dir:
        raise ValueError(f"--format {args.format} with several files needs --output-dir")
    engine = _engine(args)
    folder = Path(args.output_dir) if args.output_dir else None
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        names = output_names(args.files, args.format)
    else:
        names = [""] * len(args.files)
    bar = _progress_bar(args.files, enabled=several and not args.no_progress)
    failed, collected = 0, []

    def on_file(item: FileResult | FileError) -> None:
        bar.update(item.duration if isinstance(item, FileResult) else 0.0)

    items = engine.transcribe_files(args.files, on_file=on_file)
    for name, item in zip(names, items, strict=True):
        for warning in [] if isinstance(item, FileError) else item.warnings:
            bar.write(f"asr transcribe: warning: {printable(warning)}", file=sys.stderr)
        if isinstance(item, FileError):
            failed += 1
            bar.write(f"asr transcribe: {printable(item.message)}", file=sys.stderr)
        elif folder:
            target = folder / name
            try:
                target.write_text(render(item, args.format, several=False), encoding="utf-8")
            except OSError as error:
                failed += 1
                bar.write(f"asr transcribe: {printable(str(error))}", file=sys.stderr)
            else:
                bar.write(f"asr transcribe: {printable(item.path)} -> {printable(str(target))}",
                          file=sys.stderr)
        elif args.format == "json":
            collected.append(to_dict(item))
        else:
            sys.stdout.write(render(item, args.format, several))
            sys.stdout.flush()
    bar.close()
    if args.format == "json" and not folder:
        sys.stdout.write(json.dumps(collected, indent=2) + "\n")
    if failed:
        print(f"asr transcribe: {failed} of {len(args.files)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _progress_bar(files: list[str], enabled: bool):
    """A tqdm bar on stderr counting seconds of audio done (the headers' total), so that its
    estimate holds for files of any length; disabled unless `enabled` and stderr is a
    terminal."""
    from tqdm import tqdm

    from asr.results import header_seconds

    show = enabled and sys.stderr.isatty()
    return tqdm(total=header_seconds(files) if show else 0, disable=not show, file=sys.stderr,
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio "
                           "[{elapsed}<{remaining}, {rate_fmt}]")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="word/character error rate and real-time factor on a test set",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Transcribe every utterance of the corpora (manifest .jsonl, LibriSpeech "
        "folder or Common Voice .tsv) and print WER, CER and the real-time factor (processing "
        "time over audio duration; audio decoding not counted). An utterance whose audio can't "
        "be read is reported on stderr and left out of the scores, and the exit status is 1.")
    p.add_argument("corpora", nargs="+", help="test sets; a manifest line may leave out "
                   "`duration` (it is read from the audio file)")
    p.add_argument("--limit", type=int, default=0, help="only the first N utterances")
    p.add_argument("--output", help="write reference/hypothesis pairs here as JSON lines")
    _add_decoding_options(p)
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from asr.corpora import read_corpus
    from asr.evaluate import evaluate

    utterances = [u for path in args.corpora for u in read_corpus(path)]
    if args.limit:
        utterances = utterances[: args.limit]
    if not utterances:
        raise ValueError(f"no utterances in {', '.join(args.corpora)}")
    report = evaluate(_engine(args), utterances)
    for message in report.unreadable:
        print(f"asr evaluate: {printable(message)}", file=sys.stderr)
    print(report.summary())
    if args.output:
        report.write_pairs(args.output)
    return 1 if report.unreadable else 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model on one or more corpora",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train an LSTM-CTC model with CTC loss. Uses CUDA when available, else the "
        "CPU, with bf16 autocast where the hardware supports it (--precision). For several "
        "GPUs launch with torchrun, e.g. `torchrun --nproc_per_node 4 -m asr train ...`. A "
        "killed or time-limited run continues with --resume. Corpora: manifest .jsonl, "
        "LibriSpeech-style folder, Common Voice .tsv.")
    p.add_argument("train", nargs="+", help="training corpora")
    p.add_argument("--out", required=True, help="output folder (model.pt, last.pt, metrics.jsonl)")
    p.add_argument("--dev", nargs="*", default=[],
                   help="dev corpora; without them --dev-fraction of the speakers is held out")
    p.add_argument("--dev-fraction", type=float, default=0.05)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if present")
    p.add_argument("--init", help="start from this model file's weights (fine-tuning); with a "
                   "larger --hidden, from the same model widened (Net2Net); with a longer "
                   "--lookahead, from the same model reading ahead (new weights at zero)")
    g = p.add_argument_group("model")
    g.add_argument("--hidden", type=int, default=256, help="LSTM units per direction")
    g.add_argument("--layers", type=int, default=3)
    g.add_argument("--stack", type=int, default=3, help="10 ms frames per LSTM step")
    g.add_argument("--unidirectional", action="store_true", help="streaming (causal) model")
    g.add_argument("--lookahead", type=int, default=0,
                   help="10 ms frames each step reads past its own: a streaming model's delay")
    g.add_argument("--dropout", type=float, default=0.1,
                   help="dropout probability (with --init too: the weights are kept)")
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
    g.add_argument("--no-sortagrad", action="store_true",
                   help="shuffle the first epoch too (default: it runs short to long)")
    g.add_argument("--intermediate-ctc", type=float, default=0.0, metavar="WEIGHT",
                   help="also a CTC loss on the middle LSTM layer's outputs, with this weight "
                        "(e.g. 0.3): a shorter path for the gradient, so that deep models "
                        "leave the all-blank plateau sooner when trained from scratch "
                        "(RESULTS.md); training only, the model is unchanged")
    g = p.add_argument_group("augmentation")
    g.add_argument("--speed-perturb", action="store_true", help="speeds 0.9, 1.0 and 1.1")
    g.add_argument("--noise-prob", type=float, default=0.0, help="share of utterances with noise")
    g.add_argument("--noise-dir", help="noise recordings (default: coloured synthetic noise)")
    g.add_argument("--snr", type=float, nargs=2, default=(5.0, 30.0), metavar=("LOW", "HIGH"))
    g.add_argument("--spec-augment", action="store_true",
                   help="2 frequency masks (up to 15 bins) and 2 time masks (up to 5%%)")
    g.add_argument("--pad-silence", type=float, nargs=2, default=(0.0, 0.0),
                   metavar=("LEAD", "TRAIL"),
                   help="random silence of up to LEAD s before and TRAIL s after each utterance, "
                        "so the output does not depend on where the audio starts (e.g. 0.5 0.3); "
                        "recognition averages the model over the three phases of its 30 ms steps, "
                        "so it should have seen them all")
    g.add_argument("--floor-noise-prob", type=float, default=0.0,
                   help="share of utterances with faint noise (-90 to -50 dBFS) under everything")
    g = p.add_argument_group("running")
    g.add_argument("--workers", type=int, default=2, help="data-loading processes")
    g.add_argument("--preload", metavar="DIR",
                   help="decode the training audio once into a store in DIR (int16, about "
                        "115 MB per hour of audio; later runs decode only recordings it does "
                        "not hold yet) and read it from there, so that workers only augment; "
                        "for GPUs, whose workers cannot decode fast enough "
                        "(scripts/benchmark_input.py)")
    g.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="bf16 autocast or fp32; auto: bf16 on CUDA and on CPUs with native bf16")
    g.add_argument("--max-minutes", type=float, default=0.0,
                   help="save and stop after this many minutes (0: no limit)")
    g.add_argument("--max-steps", type=int, default=0,
                   help="save and stop after this many steps (0: no limit)")
    g.add_argument("--save-minutes", type=float, default=5.0, help="checkpoint interval")
    p.set_defaults(run=_run_train)


def train_config(args: argparse.Namespace):  # -> asr.train.TrainConfig (imports torch)
    """The `TrainConfig` that `asr train` arguments describe."""
    from asr.augment import AugmentConfig
    from asr.model import ModelDims
    from asr.train import TrainConfig

    spec = 2 if args.spec_augment else 0
    return TrainConfig(
        train=args.train, out_dir=args.out, dev=args.dev, dev_fraction=args.dev_fraction,
        dims=ModelDims(hidden=args.hidden, layers=args.layers, stack=args.stack,
                       lookahead=args.lookahead, bidirectional=not args.unidirectional,
                       dropout=args.dropout),
        augment=AugmentConfig(speeds=(0.9, 1.0, 1.1) if args.speed_perturb else (),
                              noise_prob=args.noise_prob, noise_dir=args.noise_dir,
                              snr_db=tuple(args.snr), freq_masks=spec, time_masks=spec,
                              lead_silence=args.pad_silence[0],
                              trail_silence=args.pad_silence[1],
                              floor_noise_prob=args.floor_noise_prob),
        epochs=args.epochs, batch_seconds=args.batch_seconds, max_duration=args.max_duration,
        lr=args.lr, warmup_steps=args.warmup_steps, clip=args.clip, seed=args.seed,
        sortagrad=not args.no_sortagrad, intermediate_ctc=args.intermediate_ctc,
        workers=args.workers, preload=args.preload, threads=args.threads,
        precision=args.precision,
        max_minutes=args.max_minutes,
        max_steps=args.max_steps,
        save_minutes=args.save_minutes, init=args.init)


def _run_train(args: argparse.Namespace) -> int:
    from asr.train import train

    config = train_config(args)
    progress = train(config, resume=args.resume)
    if progress.epoch < config.epochs:
        print(f"stopped at epoch {progress.epoch + 1}, step {progress.step}; "
              f"run again with --resume to continue", file=sys.stderr)
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a model to ONNX (fp32 and int8): streaming or offline",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Write DIR/model.onnx and DIR/model.int8.onnx with the vocabulary and "
        "settings in the metadata. A unidirectional model becomes a streaming model (raw 16 kHz "
        "audio chunks in, CTC log-probabilities out, LSTM and frontend state as explicit "
        "inputs/outputs; checked chunk by chunk against PyTorch); a bidirectional one an "
        "offline model for `asr transcribe --model` (a padded audio batch and its lengths in; "
        "checked on a batch against PyTorch). Needs the train extra (torch, onnx).")
    p.add_argument("checkpoint", help="a model file (asr train's model.pt)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--chunk-ms", type=int,
                   help="recommended chunk, in the streaming model's metadata (default: 160 ms "
                   "less the model's look-ahead, so that its algorithmic latency is 160 ms)")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 copy")
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    import numpy as np

    from asr.checkpoint import load_model
    from export.onnx_export import export_offline_onnx, export_onnx
    from export.parity import (
        max_abs_diff,
        offline_max_abs_diff,
        pad_to_steps,
        run_chunks,
        torch_log_probs,
    )
    from streaming.engine import onnx_session

    model = load_model(args.checkpoint)
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, 48000).astype(np.float32)
    if model.dims.bidirectional:
        paths = export_offline_onnx(model, args.out, int8=not args.no_int8)
        for path in paths:
            diff = offline_max_abs_diff(onnx_session(path), model, [audio, audio[:20000]])
            print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, offline batch vs PyTorch max "
                  f"|diff| {diff:.2e}")
        return 0
    paths = export_onnx(model, args.out, chunk_ms=args.chunk_ms, int8=not args.no_int8)
    audio = pad_to_steps(audio, model)
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
    _add_transcribe(sub)
    add_listen_parser(sub)
    add_serve_parser(sub)
    _add_evaluate(sub)
    _add_train(sub)
    _add_export(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError) as error:  # bad input: the project's errors derive from these
        print(f"asr {args.command}: error: {printable(str(error))}", file=sys.stderr)
        return 2
