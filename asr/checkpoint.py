"""One file is a complete model: weights, dimensions, vocabulary, feature settings, statistics.

Model files and training checkpoints are written by `atomic_save`, which keeps every file at
most `PART_BYTES` (so any of them fits a 16 MiB transfer): a larger checkpoint is stored as
numbered parts plus a small JSON index under the requested name. `load_file` reads either
form. Files are only ever loaded as tensors and plain data (`weights_only`), so no file can run
code, and a SHA-256 of the content stored inside each file shows any damage.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
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
DIGEST_KEY = "content_sha256"  # added by atomic_save, checked and removed by load_file


class ModelFileError(ValueError):
    """A file that is not a usable model checkpoint."""


def content_digest(obj: Any) -> str:
    """SHA-256 over nested dicts, lists and tuples of tensors (dtype, shape, bytes) and plain
    values: the same for an object and what `torch.load` makes of `torch.save` of it."""
    digest = hashlib.sha256()
    _feed(digest, obj)
    return digest.hexdigest()


def _feed(digest: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        flat = obj.detach().cpu().contiguous().reshape(-1)
        digest.update(f"tensor {flat.dtype} {tuple(obj.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        digest.update(f"dict {len(obj)};".encode())
        for key, value in obj.items():
            _feed(digest, key)
            _feed(digest, value)
    elif isinstance(obj, list | tuple):
        digest.update(f"{type(obj).__name__} {len(obj)};".encode())
        for item in obj:
            _feed(digest, item)
    else:
        digest.update(f"{type(obj).__name__} {obj!r};".encode())


def atomic_save(obj: dict, path: str | Path, part_bytes: int = PART_BYTES) -> None:
    """`torch.save` `obj` (tensors and plain data), with its `content_digest`, to `path` in
    files of at most `part_bytes`; a kill never leaves a half-written or mixed checkpoint.

    Up to `part_bytes` it is one ordinary torch file. Beyond, the bytes go to parts named
    `<path>.part-<id>-<i>` and `path` becomes a JSON index of them (with their SHA-256). Each
    file is written under a temporary name and renamed, the index last; parts that no index
    refers to any more are then removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({**obj, DIGEST_KEY: content_digest(obj)}, buffer)
    data = buffer.getbuffer()
    parts: list[str] = []
    if len(data) > part_bytes:
        run = uuid.uuid4().hex[:8]
        for number, start in enumerate(range(0, len(data), part_bytes)):
            parts.append(f"{path.name}.part-{run}-{number}")
            _write_atomically(path.parent / parts[-1], data[start : start + part_bytes])
        data = memoryview(json.dumps({"format": PARTS_FORMAT, "parts": parts, "bytes": len(data),
                                      "sha256": hashlib.sha256(data).hexdigest()}).encode())
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


def load_file(path: str | Path) -> Any:
    """Load (to the CPU) a file written by `atomic_save`, whole or in parts, as tensors and
    plain data only; checks the stored SHA-256 where there is one (files from before it have
    none). Every problem is a `ModelFileError` that names the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    obj = _parse(path.read_bytes(), path)
    if isinstance(obj, dict) and obj.get("format") == PARTS_FORMAT:
        obj = _parse(_join_parts(obj, path), path)
    if isinstance(obj, dict) and DIGEST_KEY in obj:
        obj = dict(obj)
        if obj.pop(DIGEST_KEY) != content_digest(obj):
            raise ModelFileError(f"{path}: the file is damaged (its content does not match the "
                                 "SHA-256 stored in it)")
    return obj


def _parse(data: bytes, path: Path) -> Any:
    """A JSON parts index, or the tensors and plain data of a torch file."""
    if not data:
        raise ModelFileError(f"{path}: the file is empty")
    if data.startswith(b"{"):
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelFileError(f"{path}: damaged parts index ({error})") from None
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message: a general paragraph, the reason, a pointer to the documentation
        paragraphs = [p.strip() for p in str(error).split("\n\n") if p.strip()]
        reason = paragraphs[1] if len(paragraphs) > 1 else _first_line(error)
        raise ModelFileError(
            f"{path}: refused to load it: it holds more than tensors and plain data "
            f"({reason.rstrip('.')}), so it was not written by this version of lstm-asr (an "
            "older version's checkpoint, or a crafted file)") from None
    except Exception as error:  # torch raises many kinds for a truncated or foreign file
        raise ModelFileError(f"{path}: truncated, damaged or not a model file "
                             f"({_first_line(error)})") from None


def _first_line(error: Exception) -> str:
    return str(error).strip().split("\n", 1)[0] or type(error).__name__


def _join_parts(index: dict, path: Path) -> bytes:
    """The bytes of the parts an index names, checked against its size and SHA-256."""
    parts = index.get("parts")
    if not (isinstance(parts, list) and all(isinstance(name, str) and name
                                            and Path(name).name == name for name in parts)):
        raise ModelFileError(f"{path}: damaged parts index (bad part names)")
    try:
        data = b"".join((path.parent / name).read_bytes() for name in parts)
    except OSError as error:
        raise ModelFileError(f"{path}: a part file is missing or unreadable ({error})") from None
    if len(data) != index.get("bytes") or hashlib.sha256(data).hexdigest() != index.get("sha256"):
        raise ModelFileError(f"{path}: its part files are damaged or incomplete")
    return data


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


def model_from_payload(payload: Any, source: str | Path) -> CTCModel:
    """The model (in eval mode) of a `model_payload`; refuses NaN or infinite weights.
    `source` names the file in errors."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{source}: not a {FORMAT} checkpoint")
    try:
        model = CTCModel(ModelDims(**payload["dims"]), FeatureConfig(**payload["features"]),
                         Vocabulary(tuple(payload["vocabulary"])))
        state = dict(payload["state_dict"])
        for name, tensor in state.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise ModelFileError(f"{source}: weight {name!r} holds {bad} NaN or infinite "
                                     "value(s); the file is damaged or training diverged")
            state[name] = tensor.float() if tensor.is_floating_point() else tensor
        model.load_state_dict(state)
    except (KeyError, TypeError, AttributeError, RuntimeError) as error:
        raise ModelFileError(f"{source}: not a complete model ({_first_line(error)})") from None
    return model.eval()


def load_model(path: str | Path, device: str | torch.device = "cpu") -> CTCModel:
    """Load a model file written by `save_model` (or a training checkpoint) in eval mode."""
    payload = load_file(path)
    if isinstance(payload, dict) and "model" in payload and "format" not in payload:
        payload = payload["model"]  # a training checkpoint holds the model payload
    return model_from_payload(payload, path).to(device)
