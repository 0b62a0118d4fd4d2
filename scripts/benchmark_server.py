"""Load benchmark of `asr serve`: N concurrent Vosk-protocol clients streaming in real time.

For each N it starts a fresh server pinned to one CPU core (`taskset`; the clients run on the
other cores), streams `--seconds` of real speech per client in 100 ms messages paced at real
time (utterances separated by pauses, so finals come from endpoints), and reports:

- RTF: the server's CPU time over the audio it took (all streams together), and its load
  (CPU time over wall time: 1.0 is the whole core);
- latency from the end of speech (the message holding the last word's end) to its final
  result (this includes the 0.8 s of trailing silence an endpoint needs), p50/p95, and from
  each message to its reply, p50/p95;
- the server's peak resident memory (VmHWM);
- dropped audio: bytes sent that the server did not take (its log counts them per stream).

N keeps up when every message is answered, nothing is dropped and the p95 reply latency is
under `KEEP_UP_SECONDS`. With `--search` it then looks for the highest N that keeps up
(doubling, then bisecting). Linux only (/proc, taskset).

    python scripts/benchmark_server.py --clients 1 10 50 --seconds 25 --search
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.audio import load_audio
from asr.defaults import SHARED_SPEECH

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "example.wav"
RATE = 16000
MESSAGE_SECONDS = 0.1
PAUSE_SECONDS = 1.5  # between utterances, and at the end: every utterance ends by endpoint
KEEP_UP_SECONDS = 0.5  # p95 message-to-reply latency of a server that keeps up
EOF = '{"eof" : 1}'
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    clients: int
    audio_seconds: float  # all clients together
    cpu_seconds: float
    wall_seconds: float
    speech_latency: list[float]
    reply_latency: list[float]
    peak_rss_mb: float
    dropped_bytes: int
    unanswered: int

    @property
    def keeps_up(self) -> bool:
        return (not self.dropped_bytes and not self.unanswered
                and _percentile(self.reply_latency, 95) < KEEP_UP_SECONDS)

    def row(self) -> str:
        return (f"| {self.clients} | {self.cpu_seconds / self.audio_seconds:.4f} | "
                f"{self.cpu_seconds / self.wall_seconds:.2f} | "
                f"{_percentile(self.speech_latency, 50):.2f} / "
                f"{_percentile(self.speech_latency, 95):.2f} | "
                f"{_percentile(self.reply_latency, 50) * 1000:.0f} / "
                f"{_percentile(self.reply_latency, 95) * 1000:.0f} | {self.peak_rss_mb:.0f} | "
                f"{self.dropped_bytes} | {'yes' if self.keeps_up else 'no'} |")


HEADER = ("| clients | RTF (CPU s / audio s) | server load (1 = one core) | end of speech → final "
          "p50 / p95 (s) | message → reply p50 / p95 (ms) | peak RSS (MB) | dropped bytes | "
          "keeps up |\n|---|---|---|---|---|---|---|---|")


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def speech_pieces() -> list[np.ndarray]:
    """Real recordings to stream: the shared dev set if it is there, else the example."""
    manifest = SHARED_SPEECH / "native_dev.jsonl"
    if not manifest.is_file():
        return [load_audio(EXAMPLE)]
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    return [load_audio(SHARED_SPEECH / row["audio"]) for row in rows[:40]]


def client_audio(pieces: list[np.ndarray], first: int, seconds: float) -> bytes:
    """About `seconds` of pieces from `first` on, each followed by a pause, as int16 PCM."""
    pause = np.zeros(int(PAUSE_SECONDS * RATE), np.float32)
    parts, total, i = [], 0, first
    while total < seconds * RATE:
        piece = pieces[i % len(pieces)]
        parts += [piece, pause]
        total += len(piece) + len(pause)
        i += 1
    audio = np.concatenate(parts)
    return (np.clip(audio, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()


async def stream(port: int, pcm: bytes, start: float) -> tuple[list[float], list[float], int]:
    """One real-time client: end-of-speech latencies, reply latencies, unanswered messages."""
    from websockets.asyncio.client import connect

    step = int(MESSAGE_SECONDS * RATE) * 2
    messages = [pcm[i : i + step] for i in range(0, len(pcm), step)]
    sent: list[float] = []
    speech, replies = [], []
    async with connect(f"ws://127.0.0.1:{port}", proxy=None, max_size=None) as ws:
        await ws.send(json.dumps({"config": {"sample_rate": RATE}}))

        async def receive() -> int:
            count = 0
            async for raw in ws:
                now, reply = time.perf_counter(), json.loads(raw)
                if count < len(messages):
                    replies.append(now - sent[count])
                    if reply.get("result"):
                        end = reply["result"][-1]["end"]
                        speech.append(now - sent[min(int(end / MESSAGE_SECONDS), count)])
                count += 1
            return count

        receiver = asyncio.create_task(receive())
        for k, message in enumerate(messages):
            await asyncio.sleep(max(0.0, start + k * MESSAGE_SECONDS - time.perf_counter()))
            sent.append(time.perf_counter())
            await ws.send(message)
        await ws.send(EOF)
        answered = await receiver
    return speech, replies, len(messages) + 1 - answered


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024


def measure(clients: int, pieces: list[np.ndarray], args: argparse.Namespace) -> Run:
    """Start a server on one core, stream `clients` clients at once, stop it."""
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "server.log"
        command = [sys.executable, "-m", "asr", "serve", "--port", "0", "--workers", "1",
                   "--threads", "1", "--max-streams", str(clients), *args.server_args]
        if shutil.which("taskset"):
            command = ["taskset", "-c", str(args.core), *command]
        with log.open("w") as err:
            server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True,
                                      env={**os.environ, "OMP_NUM_THREADS": "1"})
            port = int(re.search(r":(\d+) ", server.stdout.readline())[1])
            audio = [client_audio(pieces, i, args.seconds) for i in range(clients)]
            cpu, wall = _cpu_seconds(server.pid), time.perf_counter()

            async def everyone() -> list[tuple[list[float], list[float], int]]:
                start = time.perf_counter() + 0.5
                return await asyncio.gather(*(stream(port, pcm, start) for pcm in audio))

            results = asyncio.run(everyone())
            cpu, wall = _cpu_seconds(server.pid) - cpu, time.perf_counter() - wall
            rss = _peak_rss_mb(server.pid)
            server.send_signal(signal.SIGTERM)
            server.wait()
        taken = sum(map(int, re.findall(r": (\d+) bytes of audio", log.read_text())))
    sent = sum(map(len, audio))
    return Run(clients, sent / 2 / RATE, cpu, wall, [x for r in results for x in r[0]],
               [x for r in results for x in r[1]], rss, sent - taken, sum(r[2] for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--seconds", type=float, default=25.0, help="audio per client")
    parser.add_argument("--search", action="store_true",
                        help="also find the highest number of clients that keeps up")
    parser.add_argument("--core", type=int, default=0, help="the CPU core the server runs on")
    parser.add_argument("--max-clients", type=int, default=1000, help="where --search stops")
    parser.add_argument("server_args", nargs="*", help="more `asr serve` options, after --")
    args = parser.parse_args()
    others = os.sched_getaffinity(0) - {args.core}
    if others:
        os.sched_setaffinity(0, others)  # clients off the server's core
    pieces = speech_pieces()
    print(f"server on core {args.core}, clients on {sorted(others) or 'the same core'}; "
          f"{args.seconds:g} s of audio per client", file=sys.stderr)
    print(HEADER)
    runs = {}
    for n in args.clients:
        runs[n] = measure(n, pieces, args)
        print(runs[n].row(), flush=True)
    if not args.search:
        return
    good = max((n for n, run in runs.items() if run.keeps_up), default=0)
    bad = min((n for n, run in runs.items() if not run.keeps_up), default=None)
    while bad is None or bad - good > max(1, good // 10):
        n = min(2 * good or 1, args.max_clients) if bad is None else (good + bad) // 2
        if n in runs:
            break
        runs[n] = measure(n, pieces, args)
        print(runs[n].row(), flush=True)
        good, bad = (n, bad) if runs[n].keeps_up else (good, n)
    print(f"\nhighest number of clients that keeps up on one core: {good}")


if __name__ == "__main__":
    main()
