"""LSTM-CTC speech recognition: features, data, model, training, decoding and the `asr` CLI."""

__version__ = "0.2.0"
