"""`asr serve` as a real process on 127.0.0.1, driven by real WebSocket clients written from
Vosk's protocol (not from the server's code), and the model/stream split it runs on."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import load_audio
from asr.defaults import LANGUAGE_MODEL, SHARED_SPEECH, STREAMING_MODEL, STREAMING_MODEL_INT8

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from streaming.engine import StreamingModel, StreamingRecognizer  # noqa: E402
from streaming.server import ORT_DIR, route  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "example.wav"
RATE = 16000
MESSAGE_SECONDS = 0.1
EOF = '{"eof" : 1}'  # byte for byte what Vosk's example clients send
NATIVE_FILES = 3


@dataclass
class Served:
    process: subprocess.Popen
    port: int
    log: Path


def _start(tmp: Path, *options: str) -> Served:
    """`asr serve --port 0 OPTIONS` and the port it says it listens on."""
    log = tmp / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "asr", "serve", "--port", "0", *options], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    line = process.stdout.readline()
    found = re.search(r"ws://127\.0\.0\.1:(\d+)", line)
    if found is None:
        process.kill()
        pytest.fail(f"server did not start: {line!r} {log.read_text()}")
    return Served(process, int(found[1]), log)


def _stop(served: Served) -> str:
    """SIGTERM; asserts a clean exit and returns the log."""
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait() == 0
    text = served.log.read_text()
    assert "Traceback" not in text
    return text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not STREAMING_MODEL.is_file():
        pytest.skip(f"no streaming model at {STREAMING_MODEL}")
    served = _start(tmp_path_factory.mktemp("server"))
    yield served
    _stop(served)


def _write_wav(path: Path, audio: np.ndarray) -> Path:
    sf.write(path, audio, RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """16-bit 16 kHz WAVs: the example, a few real recordings (if the shared data is there) and
    one of several utterances with pauses, so endpoints fall inside the stream."""
    folder = tmp_path_factory.mktemp("wavs")
    paths = [EXAMPLE]
    manifest = SHARED_SPEECH / "native_dev.jsonl"
    if manifest.is_file():
        rows = [json.loads(line) for line in manifest.read_text().splitlines()]
        speakers: dict[str, Path] = {}
        for row in rows:
            if row["duration"] > 3 and row["speaker"] not in speakers:
                speakers[row["speaker"]] = SHARED_SPEECH / row["audio"]
        for i, audio in enumerate(list(speakers.values())[:NATIVE_FILES]):
            paths.append(_write_wav(folder / f"native{i}.wav", load_audio(audio)))
    pause = np.zeros(int(1.5 * RATE), np.float32)
    pieces = [load_audio(path) for path in paths]
    paths.append(_write_wav(folder / "long.wav",
                            np.concatenate([x for piece in pieces for x in (piece, pause)])))
    return paths


@pytest.fixture(scope="module")
def expected(recordings: list[Path]) -> dict[Path, str]:
    """What `asr transcribe --streaming` gives for each recording."""
    done = subprocess.run([sys.executable, "-m", "asr", "transcribe", "--streaming", "--threads",
                           "1", "--format", "jsonl", "--no-progress", *map(str, recordings)],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    texts = {Path(row["path"]): row["text"]
             for row in map(json.loads, done.stdout.splitlines())}
    assert len(texts) == len(recordings)
    return texts


async def _client(port: int, path: Path, config: bool = True, before: tuple = (),
                  ) -> tuple[list[dict], list[dict]]:
    """Stream a WAV as Vosk clients do: config, 100 ms PCM messages, eof. The replies to the
    `before` messages, and to the audio and eof; asserts one reply per message."""
    async with connect(f"ws://127.0.0.1:{port}", proxy=None) as ws:
        with wave.open(str(path)) as wav:
            rate = wav.getframerate()
            if config:
                await ws.send(json.dumps({"config": {"sample_rate": rate}}))
            early = []
            for message in before:
                await ws.send(message)
                early.append(json.loads(await ws.recv()))
            replies = []
            while data := wav.readframes(int(rate * MESSAGE_SECONDS)):
                await ws.send(data)
                replies.append(json.loads(await ws.recv()))
        await ws.send(EOF)
        replies.append(json.loads(await ws.recv()))
        await ws.wait_closed()
        assert ws.close_code == 1000
    assert all(("partial" in r) != ("text" in r) for r in replies), replies
    assert "text" in replies[-1]
    return early, replies


def _text(replies: list[dict]) -> str:
    return " ".join(r["text"] for r in replies if r.get("text"))


def test_concurrent_vosk_clients_get_the_finals_of_asr_transcribe(server, recordings, expected):
    async def run() -> list[tuple[list[dict], list[dict]]]:
        return await asyncio.gather(*(_client(server.port, path, config=i % 2 == 0)
                                      for i, path in enumerate(recordings)))

    results = asyncio.run(run())
    for path, (_, replies) in zip(recordings, results, strict=True):
        assert _text(replies) == expected[path] != "", path
        duration = sf.info(path).duration
        for final in (r for r in replies if r.get("text")):
            words = final["result"]
            assert " ".join(w["word"] for w in words) == final["text"]
            assert all(0 <= w["start"] < w["end"] <= duration + 1e-3 for w in words)
            assert all(0 < w["conf"] <= 1 for w in words)
    long = results[-1][1]
    assert sum(1 for r in long if r.get("text")) >= len(recordings) - 1  # endpoints mid-stream


def test_malformed_messages_get_errors_and_harm_no_stream(server, recordings, expected):
    bad = ("not json", '{"config": {"sample_rate": -8000}}', '{"config": 16000}',
           '{"config": {"sample_rate": 1}}', '{"hello": 1}', "[1, 2]", b"\x01\x02\x03")

    async def run() -> list[tuple[list[dict], list[dict]]]:
        return await asyncio.gather(_client(server.port, EXAMPLE, before=bad),
                                    _client(server.port, recordings[-1]))

    (errors, replies), (_, other) = asyncio.run(run())
    assert [sorted(e) for e in errors] == [["error"]] * len(bad)
    assert "sample_rate" in errors[1]["error"] and "16-bit" in errors[-1]["error"]
    assert _text(replies) == expected[EXAMPLE]  # the bad messages took nothing
    assert _text(other) == expected[recordings[-1]]


def test_another_sample_rate_is_resampled(server, tmp_path):
    """A 8 kHz client, as Vosk's default: same words as the 16 kHz file (the model is robust
    to the band limit on this clean recording)."""
    speech = load_audio(EXAMPLE, 8000)
    path = tmp_path / "8k.wav"
    sf.write(path, speech, 8000, subtype="PCM_16")
    _, replies = asyncio.run(_client(server.port, path))
    assert _text(replies) != ""
    words = [w for r in replies for w in r.get("result", [])]
    assert words[-1]["end"] <= len(speech) / 8000 + 1e-3


def test_limits_and_sigterm(tmp_path, recordings, expected):
    """Streams beyond the limit are closed with 1013, an oversized message closes its
    connection with 1009, an idle one is closed; the other stream is unaffected; SIGTERM
    closes open connections with 1001 and the server exits 0."""
    served = _start(tmp_path, "--max-streams", "2", "--max-message-bytes", "8000",
                    "--idle-seconds", "2", "--lm", "none")

    async def closed_with(ws) -> int:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        return ws.close_code

    async def run() -> None:
        url = f"ws://127.0.0.1:{served.port}"
        async with connect(url, proxy=None) as first, connect(url, proxy=None) as second:
            async with connect(url, proxy=None) as third:
                assert await closed_with(third) == 1013
            await first.send(b"\0" * 8002)
            assert await closed_with(first) == 1009
            assert await closed_with(second) == 1000  # idle
            assert "idle" in second.close_reason
        async with connect(url, proxy=None) as last:
            await last.send(b"\0" * 3200)
            assert json.loads(await last.recv()) == {"partial": ""}
            served.process.send_signal(signal.SIGTERM)
            assert await closed_with(last) == 1001

    asyncio.run(run())
    assert served.process.wait() == 0
    log = served.log.read_text()
    assert "Traceback" not in log and "SIGTERM" in log
    assert len(re.findall(r"^asr serve: 127\.0\.0\.1:\d+", log, re.M)) == 4  # one per stream


def test_the_page_files_are_served_over_http(server, monkeypatch, tmp_path):
    def get(path: str) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", server.port)
        connection.request("GET", path)
        return connection.getresponse()

    model = get("/model.onnx")
    assert model.status == 200 and model.read() == STREAMING_MODEL_INT8.read_bytes()
    assert model.getheader("Cross-Origin-Embedder-Policy") == "require-corp"
    for path in ("/static/../../engine.py", "/static/..%2Fserver.py", "/static/%2e%2e%2f"
                 "engine.py", "/ort/../package.json", "/elsewhere"):
        response = get(path)
        assert response.status == 404, path
    monkeypatch.setattr("streaming.server.ORT_DIR", tmp_path / "missing")
    found, status, text = route("/ort/ort.wasm.mjs")
    assert found is None and status == 503 and "npm ci --prefix streaming/web" in text
    assert route("/ort/../package.json")[1] == 404  # not a file it would serve, installed or not
    assert ORT_DIR.name == "dist"


def test_streams_of_one_model_in_threads_match_their_own_recognizers(recordings):
    """One loaded model, a stream per thread: each gets what a recognizer of its own gets,
    however its audio is cut into buffers (`Stream.accept`)."""
    lm = LANGUAGE_MODEL if LANGUAGE_MODEL.is_file() else None
    model = StreamingModel(STREAMING_MODEL, lm=lm)
    audios = [load_audio(path) for path in recordings]
    alone = [[r.text for r in StreamingRecognizer(STREAMING_MODEL, lm=lm).transcribe_recording(a)]
             for a in audios]
    got: dict[int, list[str]] = {}

    def run(i: int) -> None:
        stream, audio, size = model.stream(), audios[i], 1000 + 700 * i
        finals = [r for start in range(0, len(audio), size)
                  for r in stream.accept(audio[start : start + size], RATE)]
        got[i] = [r.text for r in [*finals, stream.final_result()] if r.text]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(audios))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [got[i] for i in range(len(audios))] == alone
