// Speech recognition in the page: the streaming ONNX model runs in onnxruntime-web (wasm),
// fed by the microphone through an AudioWorklet that resamples to the model's rate. Like the
// Python engine (streaming/engine.py), all feature extraction happens inside the ONNX graph;
// this file only decodes greedily and finds utterance ends (streaming/endpoint.py's rules).
//
// Query parameters: `autostart=1` starts listening without a click; `model=URL` loads another
// streaming model made by `asr export` (default /model.onnx, the server's int8 model).

import * as ort from "/ort/ort.wasm.min.mjs";

// streaming/endpoint.py's EndpointConfig defaults, in seconds (tests/test_browser.py checks)
const ENDPOINT = { trailingSilence: 0.8, silenceTimeout: 5.0, maxUtterance: 20.0 };
const ROUNDING = 1e-9; // seconds
const WORKLET_URL = "/static/audio-worklet.js";
const STATE_PREFIX = "state_";
const NEXT_STATE_PREFIX = "next_state_";
const MODEL_TYPE = "lstm-ctc-streaming";
const METADATA_FIELD = 14; // ModelProto.metadata_props

ort.env.wasm.wasmPaths = "/ort/";
ort.env.wasm.numThreads = 1; // no SharedArrayBuffer needed; one stream is light work

/** The key/value strings of an ONNX file's `metadata_props` (protobuf, read minimally). */
function onnxMetadata(bytes) {
  let pos = 0;
  const varint = () => {
    let value = 0;
    for (let scale = 1; ; scale *= 128) {
      const byte = bytes[pos++];
      if (byte === undefined) throw new Error("truncated ONNX file");
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
    }
  };
  const fields = (end, visit) => {
    while (pos < end) {
      const key = varint();
      const [field, wire] = [Math.floor(key / 8), key % 8];
      if (wire === 0) varint();
      else if (wire === 1) pos += 8;
      else if (wire === 5) pos += 4;
      else if (wire === 2) {
        const length = varint();
        const stop = pos + length;
        visit(field, stop);
        pos = stop;
      } else throw new Error(`not an ONNX file (protobuf wire type ${wire})`);
    }
  };
  const text = new TextDecoder();
  const meta = {};
  fields(bytes.length, (field, stop) => {
    if (field !== METADATA_FIELD) return;
    const entry = {};
    fields(stop, (name, end) => {
      entry[name] = text.decode(bytes.subarray(pos, end));
    });
    meta[entry[1] ?? ""] = entry[2] ?? "";
  });
  return meta;
}

/** streaming/endpoint.py's EndpointDetector: counts an utterance's frames and trailing blanks. */
class EndpointDetector {
  constructor(frameSeconds, blankId) {
    Object.assign(this, { frameSeconds, blankId, frames: 0, trailingBlanks: 0, speech: false });
  }

  update(best) {
    const last = best.findLastIndex((token) => token !== this.blankId);
    this.frames += best.length;
    if (last >= 0) {
      this.speech = true;
      this.trailingBlanks = best.length - 1 - last;
    } else {
      this.trailingBlanks += best.length;
    }
  }

  lasted(frames, seconds) {
    return frames * this.frameSeconds >= seconds - ROUNDING;
  }

  get isEndpoint() {
    return this.lasted(this.frames, ENDPOINT.maxUtterance)
      || (this.speech && this.lasted(this.trailingBlanks, ENDPOINT.trailingSilence));
  }

  get isSilenceTimeout() {
    return !this.speech && this.lasted(this.frames, ENDPOINT.silenceTimeout);
  }
}

/** streaming/engine.py's StreamingRecognizer, greedy: model-rate audio in, text out. */
class StreamingRecognizer {
  static async load(url) {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const meta = onnxMetadata(bytes);
    if (meta.model_type !== MODEL_TYPE) {
      throw new Error(`${url}: not a streaming model made by \`asr export\``);
    }
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
    return new StreamingRecognizer(session, meta);
  }

  constructor(session, meta) {
    this.session = session;
    this.vocabulary = JSON.parse(meta.vocabulary);
    this.blankId = Number(meta.blank_id);
    this.frameSeconds = Number(meta.frame_seconds);
    this.sampleRate = Number(meta.sample_rate);
    this.chunkSamples = Number(meta.recommended_chunk_samples);
    this.stepSamples = Number(meta.hop_samples) * JSON.parse(meta.model_dims).stack;
    this.lookaheadSamples = Number(meta.lookahead_samples ?? 0);
    this.stateInputs = session.inputMetadata.filter((input) => input.name.startsWith(STATE_PREFIX));
    this.pending = new Float32Array(0); // model-rate samples short of a chunk
    this.queue = Promise.resolve(); // runs one chunk at a time, in order
    this.onPartial = () => {};
    this.onFinal = () => {};
    this.onError = () => {};
    this.newUtterance();
  }

  newUtterance() {
    const zeros = ({ name, type, shape }) => {
      const size = shape.reduce((a, b) => a * b, 1);
      const data = type === "int64" ? new BigInt64Array(size) : new Float32Array(size);
      return [name, new ort.Tensor(type, data, shape)];
    };
    this.state = Object.fromEntries(this.stateInputs.map(zeros));
    this.endpoint = new EndpointDetector(this.frameSeconds, this.blankId);
    this.fed = 0; // real (not padding) samples given to the model this utterance
    this.tokens = [];
    this.lastBest = -1; // argmax of the last frame, to collapse repeats across chunks
  }

  /** Take the next block of model-rate samples; partial and final results come by callback. */
  acceptWaveform(samples) {
    return this.enqueue(() => this.push(samples));
  }

  /** Finish the stream: the current utterance's final result (after all queued audio). */
  finish() {
    return this.enqueue(() => this.finalResult());
  }

  /** Run `work` after the queued work; a failure is reported and the next work goes on. */
  enqueue(work) {
    this.queue = this.queue.then(work).catch((error) => this.onError(error));
    return this.queue;
  }

  async push(samples) {
    const buffer = new Float32Array(this.pending.length + samples.length);
    buffer.set(this.pending);
    buffer.set(samples, this.pending.length);
    this.pending = buffer;
    while (this.pending.length >= this.chunkSamples) {
      const chunk = this.pending.slice(0, this.chunkSamples);
      this.pending = this.pending.slice(this.chunkSamples);
      await this.decode(chunk, chunk.length);
      if (this.endpoint.isEndpoint) await this.finalResult();
      else if (this.endpoint.isSilenceTimeout) this.newUtterance();
    }
  }

  /** Decode what is buffered, zero-padded to a whole model step and the model's look-ahead;
   * report it; start anew. */
  async finalResult() {
    const real = this.pending.length;
    const padding = ((this.stepSamples - ((this.fed + real) % this.stepSamples)) % this.stepSamples)
      + this.lookaheadSamples;
    if (real + padding && this.fed + real) {
      const chunk = new Float32Array(real + padding);
      chunk.set(this.pending);
      await this.decode(chunk, real);
    }
    this.pending = new Float32Array(0);
    const text = this.text();
    this.newUtterance();
    this.onPartial("");
    if (text) this.onFinal(text);
  }

  async decode(chunk, real) {
    const feeds = { audio: new ort.Tensor("float32", chunk, [1, chunk.length]), ...this.state };
    const outputs = await this.session.run(feeds);
    for (const name of Object.keys(this.state)) {
      this.state[name] = outputs[NEXT_STATE_PREFIX + name.slice(STATE_PREFIX.length)];
    }
    this.fed += real;
    const [, frames, vocab] = outputs.log_probs.dims;
    const logProbs = outputs.log_probs.data;
    const best = [];
    for (let t = 0; t < frames; t++) {
      let arg = 0;
      for (let v = 1; v < vocab; v++) {
        if (logProbs[t * vocab + v] > logProbs[t * vocab + arg]) arg = v;
      }
      if (arg !== this.blankId && arg !== this.lastBest) this.tokens.push(arg);
      this.lastBest = arg;
      best.push(arg);
    }
    this.endpoint.update(best);
    if (frames) this.onPartial(this.text());
  }

  text() {
    const chars = this.tokens.map((token) => this.vocabulary[token]).join("");
    return chars.split(" ").filter(Boolean).join(" ");
  }
}

// ---- the page ----

const params = new URLSearchParams(location.search);
const modelUrl = params.get("model") ?? "/model.onnx";
const $ = (id) => document.getElementById(id);
const button = $("start");
let recognizer = null;
let microphone = null; // {stream, context}

function setState(state, message) {
  document.body.dataset.state = state;
  $("status").textContent = message;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function appendFinal(text) {
  const line = document.createElement("p");
  line.textContent = text;
  $("transcript").append(line);
}

/** A sentence saying why the microphone could not be opened (getUserMedia's error). */
function microphoneProblem(error) {
  if (!navigator.mediaDevices?.getUserMedia) {
    return "This page cannot use a microphone here: browsers allow it only on https:// or "
      + "http://localhost pages.";
  }
  switch (error.name) {
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone found: connect one and press Start.";
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was refused: allow it in the browser's site settings and "
        + "press Start.";
    case "NotReadableError":
      return "The microphone is busy or failed (another program may hold it).";
    default:
      return `The microphone could not be opened: ${error.name}: ${error.message}`;
  }
}

async function start() {
  $("error").hidden = true;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      // the model was trained on unprocessed recordings
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false,
               autoGainControl: false },
    });
  } catch (error) {
    showError(microphoneProblem(error));
    setState("no-microphone", "No microphone.");
    return;
  }
  const context = new AudioContext();
  try {
    await context.audioWorklet.addModule(WORKLET_URL);
    const node = new AudioWorkletNode(context, "microphone-resampler", {
      processorOptions: { targetRate: recognizer.sampleRate },
    });
    node.port.onmessage = (event) => recognizer.acceptWaveform(event.data);
    context.createMediaStreamSource(stream).connect(node);
    node.connect(context.destination); // the node outputs silence; this keeps it running
  } catch (error) {
    stream.getTracks().forEach((track) => track.stop());
    await context.close();
    showError(`The browser's audio processing failed to start: ${error.message ?? error}`);
    setState("audio-error", "Audio processing failed.");
    return;
  }
  microphone = { stream, context };
  button.textContent = "Stop";
  await context.resume();
  if (context.state !== "running") {
    setState("waiting-for-click", "Click anywhere to start listening (the browser needs a "
      + "click before it lets a page use audio).");
    document.addEventListener("click", () => context.resume(), { once: true });
  }
  const listening = () => {
    if (context.state === "running") {
      setState("listening", `Listening (microphone at ${context.sampleRate} Hz, resampled to `
        + `${recognizer.sampleRate} Hz).`);
    }
  };
  context.onstatechange = listening;
  listening();
}

async function stop() {
  const { stream, context } = microphone;
  microphone = null;
  stream.getTracks().forEach((track) => track.stop());
  await context.close();
  await recognizer.finish();
  button.textContent = "Start";
  setState("stopped", "Stopped.");
}

async function main() {
  setState("loading", `Loading the model (${modelUrl})…`);
  try {
    recognizer = await StreamingRecognizer.load(modelUrl);
  } catch (error) {
    showError(`The speech model failed to load: ${error.message ?? error}`);
    setState("model-error", "The model failed to load.");
    return;
  }
  recognizer.onPartial = (text) => { $("partial").textContent = text; };
  recognizer.onFinal = appendFinal;
  recognizer.onError = (error) => showError(`Recognition failed: ${error.message ?? error}`);
  button.disabled = false;
  button.onclick = () => (microphone ? stop() : start());
  setState("ready", "Ready: press Start and speak.");
  if (params.get("autostart") === "1") await start();
}

main();
