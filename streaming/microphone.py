"""Microphone input through PortAudio (`sounddevice`): device listing and selection, and a
source of float32 mono buffers at the device's own sample rate (the recogniser resamples).

`sounddevice` is imported on first use, not with this module: PortAudio reads the list of
devices once, when it is imported, so a sound server started later (e.g. a PulseAudio virtual
microphone in a test) is only seen by a process that has not touched it yet. No torch.

    with MicrophoneSource(device="usb", chunk_ms=100) as mic:
        for samples in mic:                   # float32 [n], mic.sample_rate Hz
            recogniser.accept_waveform(samples, mic.sample_rate)
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

_POLL_SECONDS = 0.05  # how often a waiting `read` checks for `stop()`


class MicrophoneError(RuntimeError):
    """No usable input device, or the audio stream could not be opened."""


class DeviceNotFoundError(MicrophoneError, LookupError):
    """A `--device` that matches no input device, or several."""


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    default_samplerate: float
    channels: int  # maximum input channels
    hostapi: str = ""
    is_default: bool = False

    def describe(self) -> str:
        mark = "*" if self.is_default else " "
        api = f", {self.hostapi}" if self.hostapi else ""
        return (f"{mark} {self.index:>3}  {self.name}  ({self.default_samplerate:g} Hz, "
                f"{self.channels} ch{api})")


def _sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as error:  # OSError: the PortAudio library is missing
        raise MicrophoneError(f"cannot use the microphone: {error} (install PortAudio, e.g. "
                              "`apt-get install libportaudio2`)") from error
    return sounddevice


def _default_input_index(sd) -> int:
    try:
        default = sd.default.device[0]
        if default is None or int(default) < 0:
            return int(sd.query_devices(kind="input")["index"])
        return int(default)
    except Exception:  # no default input device
        return -1


def list_devices() -> list[InputDevice]:
    """The devices that can record, in PortAudio's order; `is_default` marks the default one."""
    sd = _sounddevice()
    apis = [api["name"] for api in sd.query_hostapis()]
    default = _default_input_index(sd)
    devices = []
    for info in sd.query_devices():
        if info["max_input_channels"] < 1:
            continue
        api = apis[info["hostapi"]] if 0 <= info["hostapi"] < len(apis) else ""
        devices.append(InputDevice(int(info["index"]), info["name"],
                                   float(info["default_samplerate"]),
                                   int(info["max_input_channels"]), api,
                                   int(info["index"]) == default))
    return devices


def format_devices(devices: list[InputDevice]) -> str:
    if not devices:
        return "no input devices found"
    return "\n".join(device.describe() for device in devices)


def find_device(spec: str | int | None = None) -> InputDevice:
    """The input device for `spec`: None (the default device), an index (int or digits), or a
    case-insensitive part of the name (an exact name wins over partial matches).

    Raises `DeviceNotFoundError`, listing the input devices, when nothing or several match.
    """
    devices = list_devices()
    listing = "input devices (* default):\n" + format_devices(devices)
    if not devices:
        raise DeviceNotFoundError("no input devices found (is a microphone connected, "
                                  "or the sound server running?)")
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        default = [d for d in devices if d.is_default]
        if not default:
            raise DeviceNotFoundError(f"no default input device; choose one\n{listing}")
        return default[0]
    if isinstance(spec, int) or spec.strip().lstrip("-").isdigit():
        index = int(spec)
        for device in devices:
            if device.index == index:
                return device
        raise DeviceNotFoundError(f"no input device with index {index}\n{listing}")
    wanted = spec.strip().lower()
    exact = [d for d in devices if d.name.lower() == wanted]
    matches = exact or [d for d in devices if wanted in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DeviceNotFoundError(f"no input device matches {spec!r}\n{listing}")
    names = ", ".join(f"{d.index} ({d.name})" for d in matches)
    raise DeviceNotFoundError(f"{spec!r} matches several input devices: {names}; give an index "
                              f"or a longer part of the name\n{listing}")


class MicrophoneSource:
    """Records mono float32 buffers of about `chunk_ms` from an input device.

    The PortAudio callback only copies each block into a queue; iterate (or call `read`) in
    the consumer thread. The stream runs at the device's default rate unless `sample_rate` is
    given; multi-channel input is averaged to mono. Input overflows (samples the hardware lost
    because the callback ran late) are counted in `overflows`, and blocks dropped because the
    consumer fell more than `max_buffer_seconds` behind are counted in `dropped`; neither stops
    the stream. Iteration ends soon after `stop()` (safe from a signal handler or another
    thread), leaving any audio still queued unread.
    """

    def __init__(self, device: str | int | InputDevice | None = None, chunk_ms: float = 100,
                 sample_rate: float | None = None, max_buffer_seconds: float = 10.0) -> None:
        if chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")
        self.device = device if isinstance(device, InputDevice) else find_device(device)
        self.sample_rate = int(round(sample_rate or self.device.default_samplerate))
        self.chunk_ms = chunk_ms
        self.blocksize = max(1, round(self.sample_rate * chunk_ms / 1000))
        self.overflows = 0  # callbacks flagged with input overflow
        self.dropped = 0  # blocks dropped because the queue was full
        self.frames_read = 0  # samples returned to the consumer
        self._queue: queue.Queue[np.ndarray] = queue.Queue(
            maxsize=max(2, int(np.ceil(max_buffer_seconds * 1000 / chunk_ms))))
        self._stopped = threading.Event()
        self._stream = None
        self._channels = 1

    def _callback(self, indata: np.ndarray, frames: int, when, status) -> None:
        if status.input_overflow:
            self.overflows += 1
        block = indata[:, 0] if indata.shape[1] == 1 else indata.mean(axis=1)
        try:
            self._queue.put_nowait(np.array(block, dtype=np.float32))
        except queue.Full:
            self.dropped += 1

    def start(self) -> MicrophoneSource:
        if self._stream is not None:
            return self
        sd = _sounddevice()
        errors = []
        # Mono first; some devices only open with their own channel count (mixed down here).
        for channels in dict.fromkeys([1, max(1, min(self.device.channels, 2))]):
            stream = None
            try:
                stream = sd.InputStream(device=self.device.index, samplerate=self.sample_rate,
                                        channels=channels, dtype="float32",
                                        blocksize=self.blocksize, callback=self._callback)
                stream.start()
            except sd.PortAudioError as error:
                errors.append(f"{channels} channel(s): {error}")
                if stream is not None:
                    stream.close()
                continue
            self._stream, self._channels = stream, channels
            self._stopped.clear()
            return self
        raise MicrophoneError(f"cannot record from device {self.device.index} "
                              f"({self.device.name}) at {self.sample_rate} Hz: "
                              + "; ".join(errors))

    def stop(self) -> None:
        """End the iteration (the stream itself is closed by `close` or leaving the context)."""
        self._stopped.set()

    def close(self) -> None:
        self._stopped.set()
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()

    def __enter__(self) -> MicrophoneSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def active(self) -> bool:
        return self._stream is not None and bool(self._stream.active)

    def read(self, timeout: float | None = None) -> np.ndarray | None:
        """The next buffer; None once stopped, or after `timeout` seconds without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped.is_set():
            try:
                block = self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._stream is None:
                    return None
                if not self._stream.active:
                    stopped = "the audio stream stopped (device disconnected?)"
                    raise MicrophoneError(stopped) from None
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            self.frames_read += len(block)
            return block
        return None

    def __iter__(self) -> Iterator[np.ndarray]:
        self.start()
        while (block := self.read()) is not None:
            yield block
