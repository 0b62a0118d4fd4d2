"""The acoustic model runs a padded batch densely yet exactly: each item as if it were alone;
widened or reading further ahead, it computes the same function."""

from dataclasses import replace

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.model import (
    CTCModel,
    ModelDims,
    average,
    extend_lookahead,
    grow,
    reverse_within,
    widen,
)

LENGTHS = torch.tensor([40, 7, 33, 1, 20])


@pytest.fixture(params=[True, False], ids=["bidirectional", "unidirectional"])
def model(request) -> CTCModel:
    torch.manual_seed(0)
    return CTCModel(ModelDims(hidden=48, layers=3, bidirectional=request.param)).eval()


def test_reverse_within_flips_each_item_and_leaves_padding():
    x = torch.arange(2 * 5, dtype=torch.float32).reshape(2, 5, 1)
    flipped = reverse_within(x, torch.tensor([5, 3]))
    assert flipped[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert flipped[1, :, 0].tolist() == [7, 6, 5, 8, 9]
    assert torch.equal(reverse_within(flipped, torch.tensor([5, 3])), x)


def test_padded_batch_equals_each_item_alone(model):
    x = torch.randn(len(LENGTHS), int(LENGTHS.max()), 48)
    batch = model.encode(x, LENGTHS)
    for row, length in enumerate(LENGTHS.tolist()):
        alone = model.encode(x[row : row + 1, :length], LENGTHS[row : row + 1])
        torch.testing.assert_close(batch[row, :length], alone[0], rtol=0, atol=1e-5)


def test_padded_batch_equals_packed_sequences(model):
    x = torch.randn(len(LENGTHS), int(LENGTHS.max()), 48)
    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    reference, _ = pad_packed_sequence(model.lstm(packed)[0], batch_first=True)
    valid = torch.arange(x.shape[1])[None, :] < LENGTHS[:, None]
    torch.testing.assert_close(model.encode(x, LENGTHS)[valid], reference[valid], rtol=0,
                               atol=1e-5)


def test_layer_outputs_end_with_the_model_outputs_and_intermediate_reads_one(model):
    """Each layer's outputs (for an intermediate CTC loss) are those of the one LSTM call."""
    x = torch.randn(len(LENGTHS), int(LENGTHS.max()), 48)
    valid = torch.arange(x.shape[1])[None, :] < LENGTHS[:, None]
    layers = model.layer_outputs(x, LENGTHS)
    assert len(layers) == 3
    torch.testing.assert_close(layers[-1][valid], model.encode(x, LENGTHS)[valid], rtol=0,
                               atol=1e-5)
    frames, frame_lengths = torch.randn(2, 60, 80), torch.tensor([60, 45])
    plain, lengths = model(frames, frame_lengths)
    both, same_lengths = model(frames, frame_lengths, intermediate=1)
    assert both.shape == (2, *plain.shape) and torch.equal(lengths, same_lengths)
    torch.testing.assert_close(both[0], plain, rtol=0, atol=1e-5)
    assert not torch.allclose(both[1], plain)
    with pytest.raises(ValueError, match="intermediate layer 3 is not one of 1 to 2"):
        model(frames, frame_lengths, intermediate=3)


def test_padding_does_not_reach_the_gradient_of_valid_steps(model):
    """In training mode too, loss on valid steps does not depend on what the padding holds."""
    model.train()
    model.lstm.dropout = 0.0
    x = torch.randn(len(LENGTHS), int(LENGTHS.max()), 48)
    noisy = x.clone()
    valid = torch.arange(x.shape[1])[None, :] < LENGTHS[:, None]
    noisy[~valid] = 100.0
    grads = []
    for inputs in (x, noisy):
        inputs = inputs.clone().requires_grad_()
        model.encode(inputs, LENGTHS)[valid].pow(2).sum().backward()
        grads.append(inputs.grad[valid])
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-5)


def test_widening_keeps_the_function_and_the_rest_of_the_model(model):
    with torch.no_grad():  # a trained model's statistics, not the defaults
        model.feature_mean.normal_()
        model.feature_std.uniform_(0.5, 2.0)
    wide = widen(model, 80, seed=3).eval()
    assert wide.dims.hidden == 80 and wide.dims.layers == model.dims.layers
    assert wide.dims.bidirectional == model.dims.bidirectional
    assert torch.equal(wide.feature_mean, model.feature_mean)
    audio = torch.randn(2, 16000) * 0.1
    lengths = torch.tensor([16000, 9000])
    with torch.no_grad():
        narrow_out, narrow_lengths = model.recognize_audio(audio, lengths)
        wide_out, wide_lengths = wide.recognize_audio(audio, lengths)
    assert torch.equal(narrow_lengths, wide_lengths)
    torch.testing.assert_close(wide_out, narrow_out, rtol=0, atol=1e-4)


def test_growing_into_another_dropout_keeps_the_weights_and_the_function(model):
    grown = grow(model, replace(model.dims, dropout=0.3)).eval()
    assert grown.dims.dropout == 0.3 and grown.dropout.p == 0.3
    assert all(torch.equal(grown.state_dict()[k], v) for k, v in model.state_dict().items())
    audio = torch.randn(1, 8000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(grown.recognize_audio(audio, torch.tensor([8000]))[0],
                                   model.recognize_audio(audio, torch.tensor([8000]))[0],
                                   rtol=0, atol=0)


def test_widening_to_no_more_units_is_refused(model):
    with pytest.raises(ValueError, match="more than the model's 48 units"):
        widen(model, 48)


def test_reading_ahead_starts_as_the_same_function_and_pads_like_a_stream():
    torch.manual_seed(0)
    causal = CTCModel(ModelDims(hidden=32, layers=2, bidirectional=False)).eval()
    ahead = extend_lookahead(causal, 4).eval()
    assert ahead.input.in_features == (3 + 4) * 80
    audio, lengths = torch.randn(2, 9000) * 0.1, torch.tensor([9000, 5000])
    audio[1, 5000:] = 0.0  # right-padded with zeros, as batches are
    before, frames = causal.recognize_audio(audio, lengths)
    after, same_frames = ahead.recognize_audio(audio, lengths)
    assert torch.equal(frames, same_frames)
    for row, length in enumerate(frames.tolist()):
        torch.testing.assert_close(after[row, :length], before[row, :length])
    with torch.no_grad():
        ahead.input.weight.normal_(0, 0.1)  # now it reads ahead: still each item as if alone
    batch, _ = ahead.recognize_audio(audio, lengths)
    for row, (length, samples) in enumerate(zip(frames.tolist(), lengths, strict=True)):
        alone, _ = ahead.recognize_audio(audio[row : row + 1, :samples], samples[None])
        torch.testing.assert_close(batch[row, :length], alone[0, :length], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="already looks 4 frames ahead"):
        extend_lookahead(ahead, 4)


def test_average_is_the_mean_of_the_weights_and_extends_the_shorter_lookahead():
    torch.manual_seed(0)
    causal = CTCModel(ModelDims(hidden=16, layers=1, bidirectional=False))
    ahead = CTCModel(replace(causal.dims, lookahead=2))
    mean = average([causal, ahead])
    assert mean.dims == ahead.dims
    torch.testing.assert_close(mean.output.weight, (causal.output.weight + ahead.output.weight) / 2)
    own = causal.input.in_features
    torch.testing.assert_close(mean.input.weight[:, :own],
                               (causal.input.weight + ahead.input.weight[:, :own]) / 2)
    torch.testing.assert_close(mean.input.weight[:, own:], ahead.input.weight[:, own:] / 2)
    with pytest.raises(ValueError, match="only models of the same dimensions"):
        average([causal, CTCModel(replace(causal.dims, hidden=24))])
