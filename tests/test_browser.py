"""The web page of `asr serve` (streaming/web/) in headless Chromium: its fake microphone plays
a real recording, the page runs the int8 model in onnxruntime-web, and #transcript must match
the Python streaming engine's greedy output on the same recording within 10% of characters.

Needs Debian's `chromium` and `chromium-driver` and `npm ci --prefix streaming/web`; skips
without them. Chromium is driven through chromedriver's W3C WebDriver HTTP API (urllib).
Screenshots are kept under the test's tmp_path and copied to work/artifacts/ when writable.
"""

from __future__ import annotations

import base64
import json
import math
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from common import EXAMPLE, shared_utterances

from asr.audio import INT16_SCALE, SAMPLE_RATE, load_audio
from asr.defaults import STREAMING_MODEL_INT8
from asr.metrics import edit_distance
from streaming.endpoint import EndpointConfig
from streaming.engine import StreamingRecognizer

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "streaming" / "web"
ORT_DIST = WEB / "node_modules" / "onnxruntime-web" / "dist"
ARTIFACTS = REPO / "work" / "artifacts"
CHROMIUM, CHROMEDRIVER, NODE = (shutil.which(name) for name in
                                ("chromium", "chromedriver", "node"))
MAX_CHAR_ERROR = 0.10  # the tolerance against the Python engine's greedy output
LEAD_SECONDS, TAIL_SECONDS = 0.5, 2.0  # silence around a recording: the tail ends the utterance
GAP_SECONDS = 1.5  # between the utterances of the longer recording: an endpoint each
LONG_UTTERANCES = 4  # of the shared speech's cathy-arctic recordings (native, clean)
START_SECONDS = 60  # for a process to start, or the page to load the model
TRANSCRIBE_SLACK = 60  # seconds beyond the recording's length for the page's transcript
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required",
    "--window-size=1000,700",
]
READ_PAGE = """const text = (id) => document.getElementById(id).innerText;
    return {state: document.body.dataset.state, status: text('status'), error: text('error'),
            partial: text('partial'), transcript: text('transcript'),
            finals: [...document.querySelectorAll('#transcript p')].map((p) => p.innerText)};"""

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="no Chromium: install Debian's chromium and chromium-driver"),
    pytest.mark.skipif(not ORT_DIST.is_dir(), reason="onnxruntime-web is not installed: run "
                       "`npm ci --prefix streaming/web`"),
]


@contextmanager
def _process(args: list[str], ready: str) -> Iterator[re.Match]:
    """Run `args` until the block ends (SIGTERM); yields the match of the first line of its
    output (stdout and stderr) matching `ready`, failing if none comes in START_SECONDS."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=REPO)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:  # drains the pipe for the process's whole life
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline, seen, match = time.monotonic() + START_SECONDS, [], None
        while match is None and (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:  # it exited
                break
            seen.append(line)
            match = re.search(ready, line)
        if match is None:
            pytest.fail(f"{Path(args[0]).name} did not print {ready!r} in {START_SECONDS} s; "
                        f"it printed {''.join(seen)!r}")
        yield match
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    """The page of a real `asr serve --port 0`, as its first line of output gives it."""
    pytest.importorskip("websockets", reason="asr serve needs websockets")
    args = [sys.executable, "-m", "asr", "serve", "--port", "0", "--int8", "--lm", "none",
            "--workers", "1"]
    with _process(args, r"page: (http://\S+/)") as match:
        yield match[1]


class Chromium:
    """One headless Chromium session through chromedriver's WebDriver HTTP API."""

    def __init__(self, driver: str, flags: list[str]) -> None:
        self.driver = driver
        capabilities = {"browserName": "chrome",
                        "goog:chromeOptions": {"binary": CHROMIUM, "args": flags}}
        reply = self._call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self.session = f"/session/{reply['sessionId']}"

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.driver + path, data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=START_SECONDS) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as error:
            pytest.fail(f"WebDriver {method} {path}: {error.read().decode()[:500]}")

    def open(self, url: str) -> None:
        self._call("POST", self.session + "/url", {"url": url})

    def page(self) -> dict:
        """The page's state, status, error, partial result, transcript and final results."""
        return self._call("POST", self.session + "/execute/sync",
                          {"script": READ_PAGE, "args": []})

    def wait(self, done: Callable[[dict], bool], seconds: float) -> dict:
        """Poll the page until `done(page)` or `seconds` pass; the last page read."""
        deadline = time.monotonic() + seconds
        while not done(page := self.page()) and time.monotonic() < deadline:
            time.sleep(0.25)
        return page

    def screenshot(self, path: Path) -> None:
        """A PNG of the window at `path`, copied to work/artifacts/ when that can be made."""
        path.write_bytes(base64.b64decode(self._call("GET", self.session + "/screenshot")))
        try:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, ARTIFACTS / path.name)
        except OSError:
            pass

    def quit(self) -> None:
        self._call("DELETE", self.session)


@contextmanager
def _chromium(tmp_path: Path, flags: list[str]) -> Iterator[Chromium]:
    """A headless Chromium with `flags` besides CHROMIUM_FLAGS and a fresh profile."""
    with _process([CHROMEDRIVER, "--port=0"], r"started successfully on port (\d+)") as match:
        browser = Chromium(f"http://127.0.0.1:{match[1]}",
                           [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *flags])
        try:
            yield browser
        finally:
            browser.quit()


def _words(text: str) -> str:
    return " ".join(text.split())


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


def _microphone_recording(path: Path, utterances: list[np.ndarray]) -> float:
    """A 16 kHz 16-bit WAV of `utterances` (model-rate audio) with silence before, between
    and after, for the fake microphone; its duration in seconds."""
    parts = [_silence(LEAD_SECONDS)]
    for audio in utterances:
        parts += [audio, _silence(GAP_SECONDS)]
    parts[-1] = _silence(TAIL_SECONDS)
    audio = np.concatenate(parts)
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return len(audio) / SAMPLE_RATE


def _python_transcript(audio: np.ndarray) -> str:
    """The Python engine's greedy transcript of one utterance (int16-rounded, as in the WAV);
    the page hears it from wherever capture began."""
    recognizer = StreamingRecognizer(STREAMING_MODEL_INT8, lm=None)  # greedy, as the page
    audio = np.round(audio * INT16_SCALE) / INT16_SCALE
    return _words(" ".join(r.text for r in recognizer.transcribe_recording(
        np.concatenate([_silence(LEAD_SECONDS), audio, _silence(TAIL_SECONDS)]))))


def _check_page_transcribes(tmp_path: Path, page_url: str, name: str,
                            utterances: list[np.ndarray]) -> None:
    """The page, hearing `utterances` from the fake microphone, gives one final result each,
    within MAX_CHAR_ERROR of the Python engine's (in all)."""
    wav = tmp_path / f"{name}.wav"
    seconds = _microphone_recording(wav, utterances)
    references = [_python_transcript(audio) for audio in utterances]
    assert all(references), "the engine hears nothing: an unfair test"
    flags = ["--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={wav}%noloop"]  # played once, then silence
    with _chromium(tmp_path, flags) as browser:
        browser.open(page_url + "?autostart=1")
        page = browser.wait(lambda page: (page["state"] in ("model-error", "no-microphone")
                                          or len(page["finals"]) >= len(utterances)),
                            seconds + TRANSCRIBE_SLACK)
        browser.screenshot(tmp_path / f"browser-{name}.png")
    assert page["state"] == "listening", page
    finals = [_words(text) for text in page["finals"]]
    assert len(finals) == len(utterances), f"page: {finals}; Python engine: {references}"
    errors = sum(edit_distance(text, final)
                 for text, final in zip(references, finals, strict=True))
    length = sum(len(text) for text in references)
    assert errors <= MAX_CHAR_ERROR * length, (
        f"{errors} of {length} characters differ; page: {finals}; Python engine: {references}")


@pytest.mark.slow
def test_the_page_transcribes_the_example_from_a_fake_microphone(tmp_path, page_url):
    _check_page_transcribes(tmp_path, page_url, "example", [load_audio(EXAMPLE)])


@pytest.mark.slow
def test_the_page_transcribes_a_longer_recording_utterance_by_utterance(tmp_path, page_url):
    utterances = shared_utterances("cathy", LONG_UTTERANCES)
    _check_page_transcribes(tmp_path, page_url, "longer",
                            [load_audio(utterance.audio) for utterance in utterances])


def _check_page_says(tmp_path: Path, url: str, flags: list[str], state: str,
                     message: str) -> None:
    with _chromium(tmp_path, flags) as browser:
        browser.open(url)
        page = browser.wait(lambda page: page["state"] == state, START_SECONDS)
        browser.screenshot(tmp_path / f"browser-{state}.png")
    assert page["state"] == state, page
    assert message in page["error"], page


def test_the_page_says_when_the_model_fails_to_load(tmp_path, page_url):
    _check_page_says(tmp_path, page_url + "?autostart=1&model=/missing.onnx", [],
                     "model-error", "The speech model failed to load: /missing.onnx: HTTP 404")


def test_the_page_says_when_there_is_no_microphone(tmp_path, page_url):
    # no fake device, and Chromium's real audio input switched off
    _check_page_says(tmp_path, page_url + "?autostart=1", ["--disable-audio-input"],
                     "no-microphone", "No microphone found")


def test_the_pages_endpointing_is_the_engines():
    """app.js repeats streaming/endpoint.py's defaults; they must not drift apart."""
    found = re.search(r"const ENDPOINT = \{ trailingSilence: ([\d.]+), silenceTimeout: "
                      r"([\d.]+), maxUtterance: ([\d.]+) \};", (WEB / "app.js").read_text())
    assert found, "ENDPOINT not found in app.js"
    config = EndpointConfig()
    assert [float(value) for value in found.groups()] == [
        config.trailing_silence, config.silence_timeout, config.max_utterance]


@pytest.mark.skipif(NODE is None, reason="no node: install Debian's nodejs")
@pytest.mark.parametrize("rate", [48000, 44100, 8000])
def test_the_pages_resampler_agrees_with_soxr(tmp_path, rate):
    """resampler.js (run by node) on real speech at `rate`, against soxr (the Python engine's
    resampler) to 16 kHz: the difference is at least 35 dB below the signal."""
    soxr = pytest.importorskip("soxr")
    audio = soxr.resample(load_audio(EXAMPLE), SAMPLE_RATE, rate, quality="VHQ")
    source, target = tmp_path / "in.f32", tmp_path / "out.f32"
    audio.astype("<f4").tofile(source)
    script = (f"import {{ Resampler }} from {json.dumps((WEB / 'resampler.js').as_uri())};"
              "import fs from 'fs';"
              "const x = new Float32Array(fs.readFileSync(process.argv[1]).buffer.slice(0));"
              f"const r = new Resampler({rate}, {SAMPLE_RATE}); const out = [];"
              "for (let i = 0; i < x.length; i += 128) {"
              "  out.push(...r.process(x.subarray(i, i + 128)));"
              "}"
              "fs.writeFileSync(process.argv[2], Float32Array.from(out));")
    subprocess.run([NODE, "--input-type=module", "-e", script, source, target], check=True)
    ours = np.fromfile(target, dtype="<f4")
    theirs = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ")
    assert abs(len(ours) - len(theirs)) <= SAMPLE_RATE * 0.005  # the kernel's delay
    n = min(len(ours), len(theirs))
    snr = 10 * math.log10(np.sum(theirs[:n] ** 2) / np.sum((ours[:n] - theirs[:n]) ** 2))
    assert snr >= 35, f"{snr:.1f} dB"
