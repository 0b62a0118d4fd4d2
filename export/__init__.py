"""ONNX export of the streaming model, int8 quantisation and parity checks."""
