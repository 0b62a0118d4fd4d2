"""Benchmark the streaming engine on one CPU thread (onnxruntime intra_op=1), fp32 and int8.

    python scripts/benchmark_streaming.py [--minutes 60] [--chunk-ms 160] [--fp32 M] [--int8 M]
                                          [--lm none|LM]

Measures, per model (each in a fresh process, so memory figures are its own):
- compute per chunk (accept_waveform + is_endpoint, mean and p95) and the real-time factor
  (all compute, final results included / audio duration) over a long stream of real
  utterances separated by 0.3-2 s pauses, fed as fast as possible;
- resident memory (VmRSS) at the start, after 1 minute and at the end of that stream, and the
  process peak (VmHWM);
- algorithmic latency: chunk + look-ahead (metadata `lookahead_samples`);
- end of speech -> final result: utterances followed by silence, fed in chunk-sized buffers;
  the audio between the end of speech (energy-based) and the chunk at which is_endpoint()
  fires, plus the compute of that chunk and of final_result().
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from asr.defaults import (
    SHARED_SPEECH,
    STREAMING_MODEL,
    STREAMING_MODEL_INT8,
    language_model,
    lm_help,
)

SPEECH = SHARED_SPEECH
NOISE_RMS = 1e-4  # background of the pauses: near-silence, not digital zero
TAIL_SECONDS = 4.0  # silence after each latency-test utterance


def rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def load_utterances(count: int, rate: int) -> list[np.ndarray]:
    from asr.audio import load_audio

    manifest = SPEECH / "manifest.jsonl"
    if not manifest.is_file():
        sys.exit(f"shared speech data not found at {SPEECH}")
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["dataset"] == "cathy-arctic" and 1.5 <= r["duration"] <= 6]
    step = max(1, len(rows) // count)
    return [load_audio(SPEECH / r["audio"], rate) for r in rows[::step][:count]]


def speech_end(audio: np.ndarray, rate: int) -> float:
    """Seconds to the end of the last 10 ms frame within 35 dB of the loudest one."""
    hop = rate // 100
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop)
    energy = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(energy > energy.max() - 35)
    return (loud[-1] + 1) * hop / rate


def stream_chunks(utterances: list[np.ndarray], seconds: float, chunk: int, rate: int, rng):
    """Chunks of a `seconds`-long stream: shuffled utterances with pauses, made as needed."""
    total, pending, made = round(seconds * rate), np.zeros(0, np.float32), 0
    while made < total:
        while len(pending) < chunk:
            pause = rng.normal(0, NOISE_RMS, round(rng.uniform(0.3, 2.0) * rate))
            utterance = utterances[rng.integers(len(utterances))]
            pending = np.concatenate([pending, utterance, pause.astype(np.float32)])
        size = min(chunk, total - made)
        yield pending[:size]
        pending, made = pending[size:], made + size


def worker(model: Path, minutes: float, chunk_ms: float | None, count: int,
           lm: str | None) -> dict:
    import onnxruntime as ort

    from streaming.engine import StreamingRecognizer

    rss_before_model = rss_mb()
    meta = ort.InferenceSession(str(model)).get_modelmeta().custom_metadata_map
    rate, hop = int(meta["sample_rate"]), int(meta["hop_samples"])
    chunk = (int(meta["recommended_chunk_samples"]) if chunk_ms is None
             else max(1, round(chunk_ms * rate / 1000 / hop)) * hop)
    recognizer = StreamingRecognizer(model, threads=1, chunk_samples=chunk, lm=lm)
    utterances = load_utterances(count, rate)
    rng = np.random.default_rng(0)

    # End of speech -> final result.
    delays, chunk_ms_at_end, finals_ms = [], [], []
    for audio in utterances[: min(10, len(utterances))]:
        recognizer.reset()
        end = speech_end(audio, rate)
        tail = rng.normal(0, NOISE_RMS, round(TAIL_SECONDS * rate)).astype(np.float32)
        signal = np.concatenate([audio, tail])
        for start in range(0, len(signal), chunk):
            began = time.perf_counter()
            recognizer.accept_waveform(signal[start : start + chunk], rate)
            fired = recognizer.is_endpoint()
            spent = time.perf_counter() - began
            if not fired:
                continue
            began = time.perf_counter()
            recognizer.final_result()
            final_ms = 1000 * (time.perf_counter() - began)
            if (start + chunk) / rate > end:  # else a pause inside the utterance
                delays.append((start + chunk) / rate - end)
                chunk_ms_at_end.append(1000 * spent)
                finals_ms.append(final_ms)
                break
    endpoint_missed = min(10, len(utterances)) - len(delays)

    # The long stream.
    recognizer.reset()
    seconds = minutes * 60
    times = np.zeros(int(np.ceil(seconds * rate / chunk)), dtype=np.float64)
    rss_start, rss_minute, final_seconds, finals, fed = rss_mb(), None, 0.0, 0, 0
    for i, samples in enumerate(stream_chunks(utterances, seconds, chunk, rate, rng)):
        began = time.perf_counter()
        recognizer.accept_waveform(samples, rate)
        fired = recognizer.is_endpoint()
        times[i] = time.perf_counter() - began
        if fired:
            began = time.perf_counter()
            finals += bool(recognizer.final_result().text)
            final_seconds += time.perf_counter() - began
        fed += len(samples)
        if rss_minute is None and fed >= 60 * rate:
            rss_minute = rss_mb()
    began = time.perf_counter()
    recognizer.final_result()
    final_seconds += time.perf_counter() - began
    times = times[: i + 1]
    return {
        "model": str(model), "size_mb": model.stat().st_size / 1e6, "chunk_ms": 1000 * chunk / rate,
        "algorithmic_ms": 1000 * (chunk + int(meta.get("lookahead_samples", 0))) / rate,
        "rtf": (times.sum() + final_seconds) / (fed / rate),
        "chunk_mean_ms": 1000 * times.mean(), "chunk_p95_ms": 1000 * np.percentile(times, 95),
        "endpoint_delay_ms": [1000 * d for d in delays], "endpoint_missed": endpoint_missed,
        "final_ms": finals_ms, "end_chunk_ms": chunk_ms_at_end,
        "stream_minutes": fed / rate / 60, "stream_finals": finals,
        "rss_before_model_mb": rss_before_model, "rss_start_mb": rss_start,
        "rss_minute_mb": rss_minute, "rss_end_mb": rss_mb(), "rss_peak_mb": rss_mb("VmHWM"),
    }


def _stats(values: list[float], fmt: str = "{:.0f}") -> str:
    if not values:
        return "n/a"
    return f"{fmt.format(np.mean(values))} / {fmt.format(np.percentile(values, 95))}"


def table(results: dict[str, dict]) -> str:
    def total(r: dict) -> list[float]:
        return [d + c + f for d, c, f in zip(r["endpoint_delay_ms"], r["end_chunk_ms"],
                                             r["final_ms"], strict=True)]

    rows = [
        ("model size (MB)", lambda r: f"{r['size_mb']:.1f}"),
        ("real-time factor (lower is faster)", lambda r: f"{r['rtf']:.4f}"),
        ("compute per chunk, mean (ms)", lambda r: f"{r['chunk_mean_ms']:.2f}"),
        ("compute per chunk, p95 (ms)", lambda r: f"{r['chunk_p95_ms']:.2f}"),
        ("algorithmic latency: chunk + look-ahead (ms)", lambda r: f"{r['algorithmic_ms']:.0f}"),
        ("end of speech -> endpoint, audio (ms, mean / p95)",
         lambda r: _stats(r["endpoint_delay_ms"])),
        ("final_result() compute (ms, mean / p95)", lambda r: _stats(r["final_ms"], "{:.2f}")),
        ("end of speech -> final result (ms, mean / p95)", lambda r: _stats(total(r))),
        ("utterances without an endpoint", lambda r: str(r["endpoint_missed"])),
        ("RSS before loading the model (MB)", lambda r: f"{r['rss_before_model_mb']:.0f}"),
        ("RSS at stream start (MB)", lambda r: f"{r['rss_start_mb']:.0f}"),
        ("RSS after 1 minute (MB)",
         lambda r: "n/a" if r["rss_minute_mb"] is None else f"{r['rss_minute_mb']:.0f}"),
        ("RSS at stream end (MB)", lambda r: f"{r['rss_end_mb']:.0f}"),
        ("peak RSS, VmHWM (MB)", lambda r: f"{r['rss_peak_mb']:.0f}"),
        ("stream length (min) / utterances finalised",
         lambda r: f"{r['stream_minutes']:.1f} / {r['stream_finals']}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'':{width}}" + "".join(f"  {label:>14}" for label in results)]
    for name, cell in rows:
        lines.append(f"{name:{width}}" + "".join(f"  {cell(r):>14}" for r in results.values()))
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--fp32", default=str(STREAMING_MODEL), help="fp32 model")
    parser.add_argument("--int8", default=str(STREAMING_MODEL_INT8), help="int8 model")
    parser.add_argument("--models", default="fp32,int8", help="which to run")
    parser.add_argument("--minutes", type=float, default=60.0,
                        help="length of the long stream (memory, real-time factor)")
    parser.add_argument("--chunk-ms", type=float,
                        help="buffer size (default: the model's recommended chunk)")
    parser.add_argument("--utterances", type=int, default=40, help="real utterances to cycle")
    parser.add_argument("--lm", help=lm_help() + "; for final results")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a model path: one run, JSON out
    args = parser.parse_args()
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    if args.worker:
        print(json.dumps(worker(Path(args.worker), args.minutes, args.chunk_ms,
                                args.utterances, language_model(args.lm))))
        return 0

    results = {}
    for label in args.models.split(","):
        model = Path(getattr(args, label))
        if not model.is_file():
            print(f"{label}: {model} not found, skipped", file=sys.stderr)
            continue
        print(f"{label}: {model} ({args.minutes:g} min stream) ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--worker", str(model), "--minutes", str(args.minutes),
               "--utterances", str(args.utterances), "--lm", language_model(args.lm) or "none"]
        if args.chunk_ms:
            cmd += ["--chunk-ms", str(args.chunk_ms)]
        began = time.time()
        run = subprocess.run(cmd, capture_output=True, text=True, check=False,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        if run.returncode != 0:
            print(run.stderr, file=sys.stderr)
            return 1
        results[label] = json.loads(run.stdout.splitlines()[-1])
        print(f"{label}: done in {time.time() - began:.0f} s", file=sys.stderr)
    if not results:
        return 1
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"streaming benchmark: 1 thread (onnxruntime intra_op=1), {cpu_name()}, "
          f"{os.cpu_count()} cores, load average {load}; final results: "
          f"{language_model(args.lm) or 'greedy'}\n")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
