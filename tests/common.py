"""Shared test helpers: the README's example recording, real utterances of the shared
speech data, and the scripts of `scripts/` as modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from asr.corpora import Utterance, read_manifest
from asr.defaults import SHARED_SPEECH

# "he could not see himself": a held-out speaker the bundled models recognise exactly
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "example.wav"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """`scripts/<name>.py` imported as the module `name`."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def shared_utterances(folder: str, count: int, max_duration: float = 6.0) -> list[Utterance]:
    """The first `count` utterances under `audio/<folder>/` of the shared speech (cathy, an4,
    speechocean762, fsdd, mfa); skips the test when the shared data is absent."""
    manifest = SHARED_SPEECH / "manifest.jsonl"
    if not manifest.is_file():
        pytest.skip(f"shared speech data not found at {SHARED_SPEECH}")
    return [u for u in read_manifest(manifest)
            if f"/audio/{folder}/" in str(u.audio) and u.duration <= max_duration][:count]
