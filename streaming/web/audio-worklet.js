// The microphone's audio thread: mixes each 128-frame block to mono, resamples it to the
// model's rate and posts Float32Array blocks of about 100 ms to the page (app.js).

import { Resampler } from "./resampler.js";

const POST_SECONDS = 0.1;

class MicrophoneResampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate } = options.processorOptions;
    this.resampler = new Resampler(sampleRate, targetRate); // `sampleRate`: the context's rate
    this.postSamples = Math.round(POST_SECONDS * targetRate);
    this.pending = [];
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels.length) {
      const mono = new Float32Array(channels[0].length);
      for (const channel of channels) {
        for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / channels.length;
      }
      for (const sample of this.resampler.process(mono)) this.pending.push(sample);
      if (this.pending.length >= this.postSamples) {
        const block = Float32Array.from(this.pending);
        this.pending = [];
        this.port.postMessage(block, [block.buffer]);
      }
    }
    return true; // keep running while the microphone is silent or between tracks
  }
}

registerProcessor("microphone-resampler", MicrophoneResampler);
