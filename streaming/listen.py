"""`asr listen`: live transcription from a microphone with the streaming ONNX model.

Imports nothing heavy at module level (no torch, no sounddevice), so adding the subcommand to
a parser is free; the engine and PortAudio are loaded when the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from asr.defaults import (
    STREAMING_MODEL,
    STREAMING_MODEL_INT8,
    THREADS,
    THREADS_HELP,
    add_lm_options,
    lm_options,
)

_CLEAR_LINE = "\r\033[K"
_REPORT_SECONDS = 2.0  # at most one input-overflow warning this often


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows real defaults only (not None/False) and keeps the epilog's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def add_listen_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `listen` subcommand (runs through `args.run(args)`)."""
    p = subparsers.add_parser(
        "listen", help="transcribe live audio from a microphone (streaming model)",
        formatter_class=_HelpFormatter,
        description="Live transcription from a microphone with the streaming (unidirectional "
        "ONNX) model. Each utterance is printed on its own line on stdout when it ends (after "
        "--trailing-silence of silence, or after --max-utterance); on a terminal the partial "
        "result of the current utterance is shown and updated in place. The device is opened at "
        "its own sample rate and resampled to the model's. Input overflows (audio lost because "
        "the computer fell behind) are reported on stderr. Ctrl-C stops after printing the last "
        "utterance.",
        epilog="examples:\n  asr listen --list-devices\n  asr listen --device usb --int8\n"
        "  asr listen --format jsonl --seconds 30 > words.jsonl")
    p.add_argument("--list-devices", action="store_true",
                   help="list the input devices (* marks the default) and exit")
    p.add_argument("--device", help="input device: its index or part of its name "
                   "(case-insensitive; see --list-devices); default: the system's default input")
    p.add_argument("--chunk-ms", type=float, default=100, metavar="MS",
                   help="audio per read from the device, in milliseconds")
    p.add_argument("--sample-rate", type=float, metavar="HZ",
                   help="open the device at this rate in Hz (default: the device's own rate)")
    p.add_argument("--model", metavar="ONNX", help=f"streaming ONNX model (default: the bundled "
                   f"{STREAMING_MODEL.name}, or {STREAMING_MODEL_INT8.name} with --int8)")
    p.add_argument("--int8", action="store_true", help="use the bundled int8 model (faster)")
    p.add_argument("--threads", type=int, default=THREADS, metavar="N", help=THREADS_HELP)
    add_lm_options(p, "; for final results only (partial results are always greedy)")
    p.add_argument("--format", choices=("text", "jsonl"), default="text",
                   help="text: one line per utterance; jsonl: one JSON object per utterance "
                   'with "text", "start", "end" and "words" (word, start, end), times in '
                   "seconds since listening began")
    p.add_argument("--seconds", type=float, default=0, metavar="N",
                   help="stop after N seconds of audio (0: run until Ctrl-C)")
    g = p.add_argument_group("endpointing (when an utterance ends)")
    g.add_argument("--trailing-silence", type=float, default=0.8, metavar="S",
                   help="seconds of silence after speech that end an utterance")
    g.add_argument("--max-utterance", type=float, default=20, metavar="S",
                   help="an utterance this many seconds long is ended anyway")
    g.add_argument("--silence-timeout", type=float, default=5, metavar="S",
                   help="seconds of silence without speech after which the state is reset")
    p.set_defaults(run=run_listen)
    return p


def _model_path(args: argparse.Namespace) -> Path:
    if args.model:
        path = Path(args.model)
        if not path.is_file():
            raise FileNotFoundError(f"no model file {path}")
        return path
    path = STREAMING_MODEL_INT8 if args.int8 else STREAMING_MODEL
    if not path.is_file():
        raise FileNotFoundError(
            f"the bundled streaming model {path} is missing; pass --model MODEL.onnx (made by "
            "`asr export CHECKPOINT --out DIR`)")
    return path


class _Printer:
    """Finals on stdout, one per line; partials in place on the terminal when stdout is one."""

    def __init__(self, fmt: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.fmt, self.out, self.err = fmt, out, err
        self.live = fmt == "text" and out.isatty()
        self.shown = ""  # the partial text now on screen

    def _clear(self) -> None:
        if self.shown:
            self.out.write(_CLEAR_LINE)
            self.out.flush()
            self.shown = ""

    def partial(self, text: str) -> None:
        if not self.live or text == self.shown:
            return
        width = shutil.get_terminal_size((80, 24)).columns - 1
        line = text if len(text) <= width else "…" + text[len(text) - width + 1:]
        self.out.write(_CLEAR_LINE + line)
        self.out.flush()
        self.shown = text

    def final(self, result) -> None:
        self._clear()
        text = result.text.strip()
        if not text:
            return
        if self.fmt == "jsonl":
            words = [{"word": w.word, "start": w.start, "end": w.end} for w in result.words]
            line = json.dumps({"text": text, "start": result.start, "end": result.end,
                               "words": words}, ensure_ascii=False)
        else:
            line = text
        print(line, file=self.out, flush=True)

    def message(self, text: str) -> None:
        self._clear()
        print(text, file=self.err, flush=True)


def run_listen(args: argparse.Namespace) -> int:
    try:
        return _listen(args)
    except KeyboardInterrupt:  # while loading, or a second Ctrl-C while finishing
        print("\nasr listen: interrupted", file=sys.stderr)
        return 130


def _listen(args: argparse.Namespace) -> int:
    from streaming.microphone import MicrophoneError, find_device, format_devices, list_devices

    options = lm_options(args)  # bad settings: main's one-line error, before any device
    try:
        if args.list_devices:
            print("input devices (* default):\n" + format_devices(list_devices()))
            return 0
        device = find_device(args.device)
        model = _model_path(args)
    except (MicrophoneError, FileNotFoundError) as error:
        print(f"asr listen: {error}", file=sys.stderr)
        return 2
    if args.chunk_ms <= 0 or args.seconds < 0:
        print("asr listen: --chunk-ms must be positive and --seconds not negative",
              file=sys.stderr)
        return 2

    from streaming.endpoint import EndpointConfig
    from streaming.engine import StreamingRecognizer
    from streaming.microphone import MicrophoneSource

    endpoint = EndpointConfig(trailing_silence=args.trailing_silence,
                              silence_timeout=args.silence_timeout,
                              max_utterance=args.max_utterance)
    try:
        recognizer = StreamingRecognizer(model=model, endpoint=endpoint, threads=args.threads,
                                         **options)
    except Exception as error:  # not an ONNX file, or not a streaming model
        print(f"asr listen: cannot load the recogniser ({model.name}): {error}", file=sys.stderr)
        return 2
    try:
        source = MicrophoneSource(device, chunk_ms=args.chunk_ms, sample_rate=args.sample_rate)
        source.start()
    except MicrophoneError as error:
        print(f"asr listen: {error}", file=sys.stderr)
        return 1
    with source:
        printer = _Printer(args.format)
        printer.message(f"listening on {device.name} (device {device.index}, "
                        f"{source.sample_rate} Hz) with {model.name}; Ctrl-C to stop")
        limit = round(args.seconds * source.sample_rate) if args.seconds else None
        with _first_ctrl_c_stops(source):
            _transcribe(source, recognizer, printer, limit)
        printer.final(recognizer.final_result())
    if source.overflows or source.dropped:
        printer.message(f"asr listen: {source.overflows} input overflow(s), {source.dropped} "
                        "block(s) dropped in all")
    return 0


@contextlib.contextmanager
def _first_ctrl_c_stops(source) -> Iterator[None]:
    """The first Ctrl-C (SIGINT) ends the recording cleanly; a second raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set in the main thread
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # installed outside Python
        previous = signal.default_int_handler

    def interrupt(signum, frame) -> None:
        source.stop()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _transcribe(source, recognizer, printer: _Printer, limit: int | None) -> None:
    """Feed the microphone to the recogniser until it stops or `limit` samples were read,
    printing each utterance at its endpoint and the partial result meanwhile."""
    reported, last_report = (0, 0), -math.inf
    for samples in source:
        if limit is not None:
            samples = samples[: limit - source.frames_read + len(samples)]
        recognizer.accept_waveform(samples, source.sample_rate)
        if recognizer.is_endpoint():
            printer.final(recognizer.final_result())
        elif printer.live:
            printer.partial(recognizer.partial_result().text)
        lost = (source.overflows, source.dropped)
        if lost != reported and time.monotonic() - last_report >= _REPORT_SECONDS:
            reported, last_report = lost, time.monotonic()
            printer.message(f"asr listen: input overflow, audio was lost ({lost[0]} overflow(s), "
                            f"{lost[1]} block(s) dropped so far); try a larger --chunk-ms or "
                            "--int8")
        if limit is not None and source.frames_read >= limit:
            break


def main(argv: list[str] | None = None) -> int:
    """`python -m streaming.listen ...`: the same as `asr listen ...`."""
    parser = argparse.ArgumentParser(prog="asr")
    add_listen_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["listen", *(sys.argv[1:] if argv is None else argv)])
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
