"""One file is a complete model: weights, dimensions, vocabulary, feature settings, statistics."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from asr.features import FeatureConfig
from asr.model import CTCModel, ModelDims
from asr.text import Vocabulary

FORMAT = "lstm-asr-model/1"


class ModelFileError(ValueError):
    """A file that is not a usable model checkpoint."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """`torch.save` to a temporary file, then rename it: a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a bad file
        raise ModelFileError(f"{path}: cannot read it as a model ({error})") from error
    if isinstance(payload, dict) and "model" in payload and "format" not in payload:
        payload = payload["model"]  # a training checkpoint holds the model payload
    try:
        return model_from_payload(payload).to(device)
    except ModelFileError as error:
        raise ModelFileError(f"{path}: {error}") from None
