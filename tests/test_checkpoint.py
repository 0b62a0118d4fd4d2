"""Checkpoint files: complete, atomic, and no file over 16 MiB even for a full training state."""

import pytest
import torch
from common import EXAMPLE
from torch import nn

from asr.checkpoint import (
    PART_BYTES,
    ModelFileError,
    atomic_save,
    load_file,
    load_model,
    model_payload,
    save_model,
)
from asr.defaults import OFFLINE_MODEL
from asr.model import CTCModel, ModelDims
from asr.transcribe import Recognizer

MIB = 2**20


@pytest.fixture(scope="module")
def training_state() -> dict:
    """A default-size model (4.3 M parameters) and its AdamW state after one step: ~51 MB."""
    torch.manual_seed(0)
    model = CTCModel(ModelDims())
    optimizer = torch.optim.AdamW(model.parameters())
    audio = torch.randn(2, 16000) * 0.1
    log_probs, lengths = model.transcribe_audio(audio, torch.tensor([16000, 12000]))
    loss = nn.functional.ctc_loss(log_probs.transpose(0, 1), torch.tensor([3, 4, 5, 6]),
                                  lengths, torch.tensor([2, 2]))
    loss.backward()
    optimizer.step()
    return {"model": model_payload(model), "optimizer": optimizer.state_dict(), "step": 1}


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b


def test_a_full_training_state_is_split_into_files_under_16_mib(tmp_path, training_state):
    path = tmp_path / "last.pt"
    atomic_save(training_state, path)
    files = sorted(tmp_path.iterdir())
    assert len(files) >= 4  # the index and at least three parts
    assert all(f.stat().st_size <= PART_BYTES < 16 * MIB for f in files)
    assert _same(load_file(path), training_state)


def test_saving_again_replaces_the_parts(tmp_path, training_state):
    path = tmp_path / "last.pt"
    atomic_save(training_state, path)
    first = {f.name for f in tmp_path.iterdir()}
    atomic_save({**training_state, "step": 2}, path)
    second = {f.name for f in tmp_path.iterdir()}
    assert len(first) == len(second) and first & second == {"last.pt"}
    assert load_file(path)["step"] == 2
    atomic_save({"step": 3}, path)  # small again: one plain torch file, no parts left
    assert [f.name for f in tmp_path.iterdir()] == ["last.pt"]
    assert load_file(path) == {"step": 3}


def test_fp32_model_file_round_trips_through_parts(tmp_path):
    model = CTCModel(ModelDims()).eval()
    save_model(model, tmp_path / "model.pt")
    assert len(list(tmp_path.iterdir())) > 1  # 17 MB of float32 weights
    loaded = load_model(tmp_path / "model.pt")
    assert _same(loaded.state_dict(), model.state_dict())


def test_a_model_file_in_parts_is_recognised_as_a_checkpoint(tmp_path):
    """`asr train` writes a default-size fp32 model.pt as parts: transcribe runs it (it took the
    parts index for an ONNX file before)."""
    save_model(load_model(OFFLINE_MODEL), tmp_path / "model.pt")
    assert len(list(tmp_path.iterdir())) > 1
    (result,) = Recognizer(tmp_path / "model.pt").transcribe_files([str(EXAMPLE)])
    assert result.text == "he could not see himself"


def test_damaged_or_missing_parts_are_clear_errors(tmp_path):
    save_model(CTCModel(ModelDims()), tmp_path / "model.pt")
    part = next(f for f in tmp_path.iterdir() if ".part-" in f.name)
    part.write_bytes(part.read_bytes()[:-10])
    with pytest.raises(ModelFileError, match="damaged or incomplete"):
        load_model(tmp_path / "model.pt")
    part.unlink()
    with pytest.raises(ModelFileError, match="part file is missing"):
        load_model(tmp_path / "model.pt")
