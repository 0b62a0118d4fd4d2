"""Streaming recognition with the exported ONNX model (numpy + onnxruntime, no torch).

`streaming.engine.StreamingRecognizer` is the API; this package import loads nothing, so the
`asr` command stays quick to start.
"""
