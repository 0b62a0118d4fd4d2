// Streaming sample-rate conversion for the microphone: a Kaiser-windowed sinc low-pass
// evaluated at each output sample's (fractional) input position, so any pair of rates works
// (48 kHz, 44.1 kHz, 8 kHz... to 16 kHz). Used by audio-worklet.js; plain ES module, no DOM,
// so node can run it too (tests/test_browser.py compares it with soxr).
//
// Quality: the cut-off is ROLLOFF of the lower rate's Nyquist frequency and the kernel spans
// ZERO_CROSSINGS zero crossings each side; with KAISER_BETA, from 48 or 44.1 kHz to 16 kHz,
// this passes 0-6.8 kHz flat (-1.8 dB at 7.2 kHz, -15 dB at 7.6 kHz) and attenuates by 95 dB
// or more from 8 kHz on, so nothing aliases into the band the model's mel filters see.
// Delay: ZERO_CROSSINGS output samples (2 ms at 16 kHz).

const ROLLOFF = 0.925;
const ZERO_CROSSINGS = 32;
const KAISER_BETA = 8;
const TABLE_STEPS = 512; // kernel table entries per input sample (linear interpolation)

/** The zeroth-order modified Bessel function of the first kind (power series). */
function besselI0(x) {
  let sum = 1;
  let term = 1;
  for (let k = 1; term > 1e-12 * sum; k++) {
    term *= (x / (2 * k)) ** 2;
    sum += term;
  }
  return sum;
}

export class Resampler {
  /** A converter from `inputRate` to `outputRate` Hz for one stream of mono blocks. */
  constructor(inputRate, outputRate) {
    this.step = inputRate / outputRate; // input samples per output sample
    this.identity = inputRate === outputRate;
    const cutoff = (ROLLOFF * 0.5 * Math.min(inputRate, outputRate)) / inputRate; // cycles/sample
    this.half = Math.ceil(ZERO_CROSSINGS * Math.max(1, this.step)); // kernel half-width, samples
    this.table = new Float32Array(this.half * TABLE_STEPS + 2);
    const norm = besselI0(KAISER_BETA);
    for (let i = 0; i < this.table.length; i++) {
      const t = i / TABLE_STEPS;
      const edge = Math.min(1, t / this.half);
      const window = besselI0(KAISER_BETA * Math.sqrt(1 - edge * edge)) / norm;
      const x = 2 * cutoff * t;
      this.table[i] = 2 * cutoff * window * (t === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x));
    }
    // input history, starting with `half` zeros so the first output sample is centred on the
    // first input sample; `time` is the next output sample's position in it
    this.buffer = new Float32Array(this.half);
    this.time = this.half;
  }

  /** The kernel at `t` input samples from its centre (zero beyond its half-width). */
  kernel(t) {
    const position = Math.abs(t) * TABLE_STEPS;
    const index = Math.floor(position);
    if (index >= this.table.length - 1) return 0;
    const frac = position - index;
    return this.table[index] * (1 - frac) + this.table[index + 1] * frac;
  }

  /** The output samples that the next input block `samples` (Float32Array) completes. */
  process(samples) {
    if (this.identity) return Float32Array.from(samples);
    const buffer = new Float32Array(this.buffer.length + samples.length);
    buffer.set(this.buffer);
    buffer.set(samples, this.buffer.length);
    const out = [];
    let time = this.time;
    while (Math.floor(time + this.half) < buffer.length) {
      let sum = 0;
      const last = Math.floor(time + this.half);
      for (let k = Math.max(0, Math.ceil(time - this.half)); k <= last; k++) {
        sum += buffer[k] * this.kernel(time - k);
      }
      out.push(sum);
      time += this.step;
    }
    const drop = Math.max(0, Math.floor(time - this.half));
    this.buffer = buffer.slice(drop);
    this.time = time - drop;
    return Float32Array.from(out);
  }
}
