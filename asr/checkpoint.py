"""One file is a complete model: weights, dimensions, vocabulary, feature settings, statistics.

Model files and training checkpoints are written by `atomic_save`, which keeps every file at
most `PART_BYTES` (so any of them fits a 16 MiB transfer): a larger checkpoint is stored as
numbered parts plus a small index under the requested name. `load_file` reads either form.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import torch

from asr.features import FeatureConfig
from asr.model import CTCModel, ModelDims
from asr.text import Vocabulary

FORMAT = "lstm-asr-model/1"
PARTS_FORMAT = "lstm-asr-parts/1"
PART_BYTES = 15 * 2**20  # largest file written: under the 16 MiB a device run can send back


class ModelFileError(ValueError):
    """A file that is not a usable model checkpoint."""


def atomic_save(obj: Any, path: str | Path, part_bytes: int = PART_BYTES) -> None:
    """`torch.save` `obj` to `path` in files of at most `part_bytes`; a kill never leaves a
    half-written or mixed checkpoint.

    Up to `part_bytes` it is one ordinary torch file. Beyond, the bytes go to parts named
    `<path>.part-<id>-<i>` and `path` becomes an index of them (with their SHA-256). Each file
    is written under a temporary name and renamed, the index last; parts that no index refers
    to any more are then removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getbuffer()
    parts: list[str] = []
    if len(data) > part_bytes:
        run = uuid.uuid4().hex[:8]
        for number, start in enumerate(range(0, len(data), part_bytes)):
            parts.append(f"{path.name}.part-{run}-{number}")
            _write_atomically(path.parent / parts[-1], data[start : start + part_bytes])
        index = io.BytesIO()
        torch.save({"format": PARTS_FORMAT, "parts": parts, "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest()}, index)
        data = index.getbuffer()
    _write_atomically(path, data)
    for stale in path.parent.glob(f"{path.name}.part-*"):
        if stale.name not in parts:
            stale.unlink(missing_ok=True)


def _write_atomically(path: Path, data: memoryview) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_file(path: str | Path, weights_only: bool = True) -> Any:
    """`torch.load` (to the CPU) a file written by `atomic_save`, whole or in parts."""
    path = Path(path)
    obj = torch.load(path, map_location="cpu", weights_only=weights_only)
    if isinstance(obj, dict) and obj.get("format") == PARTS_FORMAT:
        data = b"".join((path.parent / name).read_bytes() for name in obj["parts"])
        if len(data) != obj["bytes"] or hashlib.sha256(data).hexdigest() != obj["sha256"]:
            raise ModelFileError(f"{path}: its part files are damaged or incomplete")
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=weights_only)
    return obj


def model_payload(model: CTCModel, half: bool = False, **info: Any) -> dict:
    """The dictionary `save_model` writes; `half` stores float weights as float16."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    return {"format": FORMAT, "dims": model.dims.to_dict(), "features": model.features.to_dict(),
            "vocabulary": list(model.vocab.tokens), "state_dict": state, "info": info}


def save_model(model: CTCModel, path: str | Path, half: bool = False, **info: Any) -> None:
    """Write a self-contained model file; `info` (training facts) is kept alongside."""
    atomic_save(model_payload(model, half, **info), path)


def model_from_payload(payload: dict) -> CTCModel:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"not a {FORMAT} checkpoint")
    model = CTCModel(ModelDims(**payload["dims"]), FeatureConfig(**payload["features"]),
                     Vocabulary(tuple(payload["vocabulary"])))
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    model.load_state_dict(state)
    return model.eval()


def load_model(path: str | Path, device: str | torch.device = "cpu") -> CTCModel:
    """Load a model file written by `save_model` (or a training checkpoint) in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        payload = load_file(path)
    except ModelFileError:
        raise
    except Exception as error:  # torch raises many kinds for a bad file
        raise ModelFileError(f"{path}: cannot read it as a model ({error})") from error
    if isinstance(payload, dict) and "model" in payload and "format" not in payload:
        payload = payload["model"]  # a training checkpoint holds the model payload
    try:
        return model_from_payload(payload).to(device)
    except ModelFileError as error:
        raise ModelFileError(f"{path}: {error}") from None
