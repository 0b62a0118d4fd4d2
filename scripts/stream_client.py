"""Minimal streaming client for an `asr export` model: numpy, onnxruntime and `wave` only.

    python scripts/stream_client.py model.onnx speech.wav [--chunk-ms 160]

The contract: input `audio` float32 [1, n] (n a positive multiple of metadata `hop_samples`,
samples in [-1, 1] at `sample_rate`); every other input `state_X` is fed the previous run's
output `next_state_X` (zeros at the start of a stream); output `log_probs` [1, T, V] holds CTC
log-probabilities of the T steps (`frame_seconds` each) completed so far. At the end of a
stream, pad with zeros to a whole step (hop_samples * model_dims.stack), then with
`lookahead_samples` more, which the last steps read ahead. Greedy decoding:
argmax per step, collapse repeats (across chunks too), drop `blank_id`, map with `vocabulary`.
"""

import argparse
import json
import sys
import wave

import numpy as np
import onnxruntime as ort

DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="model.onnx or model.int8.onnx")
    parser.add_argument("wav", help="16-bit mono WAV at the model's sample rate")
    parser.add_argument("--chunk-ms", type=float, help="default: the model's recommended chunk")
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    vocabulary, blank = json.loads(meta["vocabulary"]), int(meta["blank_id"])
    rate, hop = int(meta["sample_rate"]), int(meta["hop_samples"])
    step = hop * json.loads(meta["model_dims"])["stack"]
    chunk = int(meta["recommended_chunk_samples"])
    if args.chunk_ms:
        chunk = max(1, round(args.chunk_ms * rate / 1000 / hop)) * hop

    try:
        with wave.open(args.wav, "rb") as w:
            if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, rate):
                sys.exit(f"{args.wav}: need a 16-bit mono WAV at {rate} Hz, got "
                         f"{w.getsampwidth() * 8}-bit, {w.getnchannels()} channel(s), "
                         f"{w.getframerate()} Hz")
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    except (OSError, EOFError, wave.Error) as error:
        sys.exit(f"{args.wav}: not a readable WAV file ({error})")
    audio = pcm.astype(np.float32) / 32768.0
    # the end of the stream: whole steps, and what the last ones read ahead
    audio = np.pad(audio, (0, -len(audio) % step + int(meta.get("lookahead_samples", 0))))

    state = {i.name: np.zeros(i.shape, DTYPES[i.type])
             for i in session.get_inputs() if i.name != "audio"}
    outputs = ["log_probs", *("next_" + name for name in state)]
    tokens, previous = [], blank
    for start in range(0, len(audio), chunk):
        log_probs, *next_state = session.run(
            outputs, {"audio": audio[None, start : start + chunk], **state})
        state = dict(zip(state, next_state, strict=True))
        for best in log_probs[0].argmax(axis=-1):
            if best != blank and best != previous:
                tokens.append(vocabulary[best])
            previous = best
    print(" ".join("".join(tokens).split()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
