"""Streaming recognition with the exported ONNX model (numpy + onnxruntime, no torch)."""

from streaming.endpoint import EndpointConfig
from streaming.engine import Result, StreamingRecognizer

__all__ = ["EndpointConfig", "Result", "StreamingRecognizer"]
