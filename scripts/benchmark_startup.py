"""Start-up time of `asr transcribe` and the real-time factor at each thread setting, idle and
with other work running (the measurements behind the default `--threads`).

    python scripts/benchmark_startup.py [--runs 5] [--seconds 120] [--threads 1 2 0] [--hogs 1]

- cold start-up: wall time from command to transcript of `asr transcribe` on the bundled
  3-second example with the default settings (bundled LM), each run a new process; the first
  run with an empty cache (`XDG_CACHE_HOME` in a temporary folder: the LM's lexicon is built
  and cached), then `--runs` runs with the cache (min and median);
- real-time factor (compute after loading / audio seconds) of the offline model (fp32, int8)
  and the streaming engine (fp32, int8), all with the bundled LM, at each `--threads`
  setting (0: onnxruntime's choice, one per core), each in a fresh process, on `--seconds` of
  audio (the example repeated, 0.5 s apart; the median of 3 runs); once idle and once with
  `--hogs` busy-looping processes (another core busy). It prints, per condition, how far each
  setting is from the best, and whether the default (`asr.defaults.THREADS`) is within 20%.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from asr.defaults import THREADS

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "example.wav"
ENGINES = ("offline", "offline-int8", "streaming", "streaming-int8")
HOG = "while True: pass"
WITHIN = 1.2  # the default's RTF may be at most this times the best
REPEATS = 3  # timed runs per setting (the median counts)


def asr_command() -> list[str]:
    """The installed `asr` entry point, else `python -m asr`."""
    found = shutil.which("asr")
    return [found] if found else [sys.executable, "-m", "asr"]


def start_up(env: dict[str, str]) -> float:
    """Seconds from starting `asr transcribe EXAMPLE` to its exit (it prints the transcript)."""
    started = time.perf_counter()
    subprocess.run([*asr_command(), "transcribe", str(EXAMPLE)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def test_audio(seconds: float) -> np.ndarray:
    from asr.audio import SAMPLE_RATE, load_audio

    piece = np.concatenate([load_audio(EXAMPLE), np.zeros(SAMPLE_RATE // 2, np.float32)])
    return np.tile(piece, int(np.ceil(seconds * SAMPLE_RATE / len(piece))))


def worker(engine: str, threads: int, seconds: float) -> None:
    """Print the RTF of one engine at one thread setting as JSON (runs in its own process)."""
    audio = test_audio(seconds)
    if engine.startswith("offline"):
        from asr.defaults import OFFLINE_ONNX, OFFLINE_ONNX_INT8
        from asr.transcribe import Recognizer

        recognizer = Recognizer(OFFLINE_ONNX_INT8 if engine.endswith("int8") else OFFLINE_ONNX,
                                threads=threads)
    else:
        from asr.defaults import LANGUAGE_MODEL, STREAMING_MODEL, STREAMING_MODEL_INT8
        from streaming.engine import StreamingRecognizer

        recognizer = StreamingRecognizer(
            STREAMING_MODEL_INT8 if engine.endswith("int8") else STREAMING_MODEL,
            threads=threads, lm=LANGUAGE_MODEL)
    recognizer.transcribe(audio[:16000])  # warm up
    elapsed = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        recognizer.transcribe(audio)
        elapsed.append(time.perf_counter() - started)
    print(json.dumps({"rtf": statistics.median(elapsed) / (len(audio) / 16000)}))


def rtf(engine: str, threads: int, seconds: float) -> float:
    out = subprocess.run([sys.executable, __file__, "--worker", engine, str(threads),
                          str(seconds)], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])["rtf"]


def measure_threads(engines: list[str], settings: list[int], seconds: float,
                    ) -> dict[str, dict[int, float]]:
    return {engine: {threads: rtf(engine, threads, seconds) for threads in settings}
            for engine in engines}


def report(title: str, table: dict[str, dict[int, float]], settings: list[int]) -> None:
    print(f"\n{title}: real-time factor (lower is faster); x = times the best")
    print(f"{'engine':16s}" + "".join(f"{'threads ' + str(t):>20s}" for t in settings)
          + "   default within 20%")
    for engine, row in table.items():
        best = min(row.values())
        cells = "".join(f"{row[t]:>12.4f} ({row[t] / best:4.2f}x)" for t in settings)
        verdict = ("yes" if row[THREADS] <= WITHIN * best else "NO") if THREADS in row else "-"
        print(f"{engine:16s}{cells}   {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="start-up runs with the cache")
    parser.add_argument("--seconds", type=float, default=120.0, help="audio per RTF run")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 0])
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--hogs", type=int, default=1, help="busy processes for the busy case")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), float(args.worker[2]))
        return

    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start; "
          f"default --threads {THREADS}")
    with tempfile.TemporaryDirectory() as cache:
        first = start_up({**os.environ, "XDG_CACHE_HOME": cache})
    times = [start_up(dict(os.environ)) for _ in range(args.runs)]
    print(f"start-up to transcript, 3 s clip, bundled LM: first (empty cache) {first:.2f} s; "
          f"cached: min {min(times):.2f} s, median {statistics.median(times):.2f} s "
          f"({args.runs} runs)")

    report("idle", measure_threads(args.engines, args.threads, args.seconds), args.threads)
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.hogs)]
    try:
        busy = measure_threads(args.engines, args.threads, args.seconds)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    report(f"{args.hogs} other core(s) busy", busy, args.threads)


if __name__ == "__main__":
    main()
