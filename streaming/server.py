"""`asr serve`: many audio streams on one loaded model over WebSocket, in Vosk's protocol, and
the browser page over plain HTTP on the same port.

The protocol (as Vosk's server, so that Vosk clients work unchanged), per connection:

- an optional text message `{"config": {"sample_rate": R}}` (default: the model's rate; other
  config keys are ignored); it gets no reply;
- binary messages of 16-bit little-endian mono PCM, each answered by exactly one message:
  `{"partial": "..."}`, or `{"text": "...", "result": [{"word", "start", "end", "conf"}]}`
  when an utterance ended inside it (several utterances ending in one message are joined);
- the text message `{"eof" : 1}`: the last final result, then the server closes (1000).

A malformed message gets `{"error": "..."}` and the connection goes on. Over the limits: a
connection beyond `max_streams` is closed at once with 1013 (try again later), a message over
`max_message_bytes` closes its connection with 1009, and `idle_seconds` without a message
with 1000. SIGTERM (or SIGINT) stops accepting, closes every connection with 1001 and returns.

Imports nothing heavy at module level, so adding the subcommand to a parser is free.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from asr.defaults import STREAMING_MODEL, STREAMING_MODEL_INT8, add_lm_options, lm_options

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection
    from websockets.http11 import Request, Response

    from streaming.engine import Result, Stream, StreamingModel

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2700  # Vosk's
WEB_DIR = Path(__file__).resolve().parent / "web"
ORT_DIR = WEB_DIR / "node_modules" / "onnxruntime-web" / "dist"
PAGE = "index.html"
PAGE_MODEL = STREAMING_MODEL_INT8  # what the page runs in the browser
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
}
# cross-origin isolation, which onnxruntime-web's threaded wasm (SharedArrayBuffer) needs
PAGE_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
CLOSE_TRY_LATER = 1013
CLOSE_INTERNAL_ERROR = 1011
PCM_BYTES = 2  # 16-bit samples
EOF_KEY, CONFIG_KEY = "eof", "config"

log = logging.getLogger("asr.serve")


@dataclass(frozen=True)
class Limits:
    """What one server takes."""

    max_streams: int = 100  # connections at once; more are closed with 1013
    max_message_bytes: int = 1 << 20  # 32 s of 16 kHz audio a message
    idle_seconds: float = 30.0  # a connection silent this long is closed


class ProtocolError(ValueError):
    """A message the protocol does not allow; answered with `{"error": ...}`."""


def result_message(results: list[Result]) -> dict:
    """Vosk's final-result message for the utterances ended by one message (joined)."""
    words = [word for result in results for word in result.words]
    return {"text": " ".join(result.text for result in results if result.text),
            "result": [{"word": w.word, "start": w.start, "end": w.end,
                        "conf": 1.0 if w.conf is None else w.conf} for w in words]}


@dataclass
class Session:
    """One connection's stream and protocol state (no I/O: the server feeds it messages)."""

    stream: Stream
    sample_rate: int
    audio_bytes: int = 0  # PCM taken
    finals: int = 0  # final-result messages sent
    done: bool = False  # `eof` seen

    def on_text(self, message: str) -> dict | None:
        """A config (no reply) or eof (the last final result) message."""
        try:
            request = json.loads(message)
        except json.JSONDecodeError as error:
            raise ProtocolError(f"a text message must be JSON: {error}") from None
        if not isinstance(request, dict) or not ({CONFIG_KEY, EOF_KEY} & request.keys()):
            raise ProtocolError('expected {"config": {"sample_rate": R}} or {"eof" : 1}')
        if EOF_KEY in request:
            self.done = True
            return self._final([self.stream.final_result()])
        config = request[CONFIG_KEY]
        if not isinstance(config, dict):
            raise ProtocolError('"config" must be an object such as {"sample_rate": 16000}')
        if "sample_rate" in config:
            self.sample_rate = _sample_rate(config["sample_rate"])
        return None

    def on_audio(self, message: bytes) -> dict:
        """16-bit little-endian PCM: a final result if an utterance ended in it, else the
        partial result."""
        import numpy as np

        if len(message) % PCM_BYTES:
            raise ProtocolError(f"audio must be 16-bit PCM (an even number of bytes), got "
                                f"{len(message)} bytes; none of it was taken")
        finals = self.stream.accept(np.frombuffer(message, dtype="<i2"), self.sample_rate)
        self.audio_bytes += len(message)
        if finals:
            return self._final(finals)
        return {"partial": self.stream.partial_result().text}

    def _final(self, results: list[Result]) -> dict:
        self.finals += 1
        return result_message(results)


def _sample_rate(value: object) -> int:
    from asr.audio import FILE_RATES, check_sample_rate

    try:
        rate = check_sample_rate(value)
    except (TypeError, ValueError) as error:
        raise ProtocolError(f"config: {error}") from None
    low, high = FILE_RATES
    if not low <= rate <= high:
        raise ProtocolError(f"config: sample_rate must be {low} to {high} Hz, not {rate}")
    return rate


def _file(path: Path) -> Response:
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    body = path.read_bytes()
    headers = Headers(PAGE_HEADERS)
    headers["Content-Type"] = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    headers["Content-Length"] = str(len(body))
    return Response(HTTPStatus.OK, HTTPStatus.OK.phrase, headers, body)


def _plain_name(name: str) -> bool:
    """Whether `name` names a file directly in a folder (no sub-folders, no `..`)."""
    return bool(name) and not any(c in name for c in "/\\\0") and not name.startswith(".")


def _in_folder(folder: Path, name: str) -> Path | None:
    """The file `name` directly in `folder`, if `name` is plain and there is one."""
    path = folder / name
    return path if _plain_name(name) and path.is_file() else None


def route(target: str) -> tuple[Path | None, HTTPStatus, str]:
    """The file a GET of `target` serves, or None with the status and text to answer."""
    path = unquote(urlsplit(target).path)
    if path in ("/", "/" + PAGE):
        found = _in_folder(WEB_DIR, PAGE)
    elif path == "/model.onnx":
        found = PAGE_MODEL if PAGE_MODEL.is_file() else None
    elif path.startswith("/static/"):
        found = _in_folder(WEB_DIR, path[len("/static/"):])
    elif path.startswith("/ort/"):
        name = path[len("/ort/"):]
        if not ORT_DIR.is_dir() and _plain_name(name):
            return None, HTTPStatus.SERVICE_UNAVAILABLE, (
                f"onnxruntime-web is not installed in {ORT_DIR}; run `npm ci --prefix "
                "streaming/web` in the repository and restart the server\n")
        found = _in_folder(ORT_DIR, name)
    else:
        found = None
    if found is None:
        return None, HTTPStatus.NOT_FOUND, f"not found: {path}\n"
    return found, HTTPStatus.OK, ""


class Server:
    """Vosk-protocol streams on one `StreamingModel`; decoding runs in `workers` threads."""

    def __init__(self, model: StreamingModel, limits: Limits = Limits(),
                 workers: int | None = None) -> None:
        self.model, self.limits = model, limits
        self.streams = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers or os.cpu_count() or 1, thread_name_prefix="asr-stream")

    def process_request(self, connection: ServerConnection, request: Request,
                        ) -> Response | None:
        """Plain HTTP GETs get the page's files; WebSocket upgrades go on to `handle`."""
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        path, status, text = route(request.path)
        if path is None:
            response = connection.respond(status, text)
            response.headers.update(PAGE_HEADERS)
        else:
            response = _file(path)
        log.info("GET %s %d", request.path, response.status_code)
        return response

    async def handle(self, connection: ServerConnection) -> None:
        """One client's stream, message by message, until eof, a close, idle or shutdown."""
        from websockets.exceptions import ConnectionClosed

        host, port = connection.remote_address[:2]
        client = f"{host}:{port}"
        if self.streams >= self.limits.max_streams:
            log.info("%s refused: %d streams open", client, self.streams)
            await connection.close(CLOSE_TRY_LATER, "too many streams; try again later")
            return
        self.streams += 1
        session = Session(self.model.stream(), self.model.sample_rate)
        started, ending = time.monotonic(), "closed by the client"
        loop = asyncio.get_running_loop()
        try:
            while not session.done:
                try:
                    async with asyncio.timeout(self.limits.idle_seconds):
                        message = await connection.recv()
                except TimeoutError:
                    ending = f"idle for {self.limits.idle_seconds:g} s"
                    await connection.close(reason=ending)
                    break
                on_message = session.on_text if isinstance(message, str) else session.on_audio
                try:
                    reply = await loop.run_in_executor(self._pool, on_message, message)
                except (ValueError, TypeError) as error:  # bad input, ProtocolError included
                    reply = {"error": str(error)}
                if reply is not None:
                    await connection.send(json.dumps(reply))
            else:
                ending = "eof"
                await connection.close()
        except ConnectionClosed as closed:
            ending = f"connection closed: {closed}"
        except Exception:  # a bug: this stream ends, the others go on
            log.exception("%s: internal error", client)
            ending = "internal error"
            await connection.close(CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            self.streams -= 1
            log.info("%s: %d bytes of audio at %d Hz, %d final results, %.1f s, %s", client,
                     session.audio_bytes, session.sample_rate, session.finals,
                     time.monotonic() - started, ending)

    async def run(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                  on_ready: Callable[[str, int], None] | None = None) -> None:
        """Serve until SIGTERM or SIGINT; `on_ready(host, port)` once listening (port 0
        picks a free port)."""
        from websockets.asyncio.server import serve

        loop = asyncio.get_running_loop()
        stop = loop.create_future()

        def on_signal(signum: int) -> None:
            if not stop.done():
                stop.set_result(signum)

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        async with serve(self.handle, host, port, process_request=self.process_request,
                         max_size=self.limits.max_message_bytes,
                         compression=None) as server:
            bound = server.sockets[0].getsockname()
            if on_ready is not None:
                on_ready(bound[0], bound[1])
            signum = await stop
            log.info("%s: closing %d streams", signal.Signals(signum).name, self.streams)
        self._pool.shutdown()


def add_serve_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `serve` subcommand (runs through `args.run(args)`)."""
    p = subparsers.add_parser(
        "serve", help="WebSocket server for many streams (Vosk's protocol) and the web page",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Serve streaming recognition over WebSocket in Vosk's protocol (Vosk "
        "clients work unchanged) and the browser page at / over HTTP, on one port. The model "
        "and the language model are loaded once and shared by every stream. Logs one line "
        "per connection on stderr. SIGTERM or Ctrl-C closes the connections and exits 0.",
        epilog="protocol: optional text {\"config\": {\"sample_rate\": 16000}}, then binary "
        "16-bit little-endian mono PCM messages, each answered by {\"partial\": ...} or a "
        "final {\"text\": ..., \"result\": [{word, start, end, conf}]}; {\"eof\" : 1} gets the "
        "last final result and the server closes.")
    p.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help="port (0: any free one; the port is printed on stdout)")
    p.add_argument("--model", metavar="ONNX", help=f"streaming ONNX model (default: the bundled "
                   f"{STREAMING_MODEL.name}, or {STREAMING_MODEL_INT8.name} with --int8)")
    p.add_argument("--int8", action="store_true", help="use the bundled int8 model (faster)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="onnxruntime threads per ONNX run")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="threads decoding streams at once (0: one per CPU)")
    add_lm_options(p, "; for final results (partial results are greedy)")
    limits = Limits()
    g = p.add_argument_group("limits")
    g.add_argument("--max-streams", type=int, default=limits.max_streams, metavar="N",
                   help="connections at once; more are closed with code 1013")
    g.add_argument("--max-message-bytes", type=int, default=limits.max_message_bytes,
                   metavar="B", help="larger messages close their connection with code 1009")
    g.add_argument("--idle-seconds", type=float, default=limits.idle_seconds, metavar="S",
                   help="a connection without a message this long is closed")
    p.set_defaults(run=run_serve)
    return p


def run_serve(args: argparse.Namespace) -> int:
    """`asr serve`: load the model once and serve until SIGTERM/SIGINT."""
    from streaming.engine import StreamingModel

    for name in ("threads", "workers", "max_streams", "max_message_bytes", "idle_seconds"):
        if getattr(args, name) < (0 if name == "workers" else 1e-9):
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    if args.int8 and args.model:
        raise ValueError("--int8 picks the bundled int8 model; with --model give the int8 "
                         "ONNX file itself")
    for signum in (signal.SIGTERM, signal.SIGINT):  # while loading; serving has its own
        signal.signal(signum, lambda *_: sys.exit(0))
    logging.basicConfig(level=logging.INFO, format="asr serve: %(message)s", stream=sys.stderr)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    model = StreamingModel(args.model or (STREAMING_MODEL_INT8 if args.int8 else STREAMING_MODEL),
                           threads=args.threads, **lm_options(args))
    server = Server(model, Limits(args.max_streams, args.max_message_bytes, args.idle_seconds),
                    workers=args.workers or None)

    def ready(host: str, port: int) -> None:
        print(f"asr serve: listening on ws://{host}:{port} (page: http://{host}:{port}/)",
              flush=True)

    asyncio.run(server.run(args.host, args.port, ready))
    return 0
