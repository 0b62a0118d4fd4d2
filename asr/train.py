"""Training: CTC loss, bf16 autocast where the hardware has it, DDP under torchrun, exact resume.

Files in the output folder: `config.json`, `last.pt` (everything needed to resume),
`model.pt` (the model with the lowest dev CTC loss so far: early in training
WER favours models that say little), `metrics.jsonl` (one JSON object per
logged step or epoch, for plotting).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from asr.augment import AugmentConfig, spec_augment
from asr.checkpoint import (
    atomic_save,
    load_file,
    load_model,
    model_from_payload,
    model_payload,
    save_model,
)
from asr.corpora import Utterance, read_corpus, split_by_speaker, total_hours
from asr.data import BucketBatchSampler, SpeechDataset, collate
from asr.decode import greedy_decode
from asr.defaults import PRECISIONS
from asr.metrics import ErrorRates
from asr.model import CTCModel, ModelDims

LAST, BEST, METRICS, CONFIG = "last.pt", "model.pt", "metrics.jsonl", "config.json"


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as config.json)."""

    train: list[str]
    out_dir: str
    dev: list[str] = field(default_factory=list)  # when empty, hold out dev_fraction of speakers
    dev_fraction: float = 0.05
    dims: ModelDims = field(default_factory=ModelDims)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: int = 30
    batch_seconds: float = 300.0  # padded audio per batch (per GPU under DDP)
    max_duration: float = 30.0  # longer utterances are left out
    lr: float = 1e-3
    warmup_steps: int = 500
    weight_decay: float = 1e-2
    clip: float = 5.0
    seed: int = 0
    sortagrad: bool = True  # first epoch from short to long utterances
    workers: int = 2
    threads: int = 0  # torch CPU threads; 0 = torch's default
    precision: str = "auto"  # "bf16", "fp32", or "auto": bf16 where the hardware has it
    max_minutes: float = 0.0  # stop (resumably) after this long; 0 = no limit
    max_steps: int = 0  # stop (resumably) after this many steps of this run; 0 = no limit
    save_minutes: float = 5.0
    stats_utterances: int = 500
    log_every: int = 25
    init: str | None = None  # start from this model file's weights

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        data["dims"] = ModelDims(**data["dims"])
        augment = data["augment"]
        augment["speeds"] = tuple(augment["speeds"])
        augment["snr_db"] = tuple(augment["snr_db"])
        data["augment"] = AugmentConfig(**augment)
        return cls(**data)


@dataclass
class Progress:
    epoch: int = 0
    batch: int = 0  # batches done in this epoch
    step: int = 0
    best_loss: float = math.inf  # dev CTC loss of model.pt
    seconds: float = 0.0  # training time over all runs


class _Run:
    """Process-group facts: rank 0 logs, validates and writes files."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available()
        self.device = torch.device(f"cuda:{local}" if cuda else "cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        if self.world > 1:
            dist.init_process_group("nccl" if cuda else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on any rank."""
        if self.world == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            dist.destroy_process_group()


def load_utterances(paths: list[str], max_duration: float) -> list[Utterance]:
    utterances = [u for path in paths for u in read_corpus(path)]
    return [u for u in utterances if u.duration <= max_duration]


@torch.no_grad()
def feature_stats(model: CTCModel, utterances: list[Utterance], count: int, seed: int,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Global per-bin mean and standard deviation of log-mel frames over a sample of utterances."""
    dataset = SpeechDataset(utterances, model.vocab)
    picks = np.random.default_rng(seed).permutation(len(utterances))[:count]
    total = torch.zeros(model.dims.n_mels, dtype=torch.float64)
    squares = torch.zeros_like(total)
    frames_seen = 0
    for i in picks:
        audio, _ = dataset[int(i)]
        frames, _ = model.log_mel(audio[None], torch.tensor([len(audio)]))
        frames = frames[0].double()
        total += frames.sum(0)
        squares += (frames**2).sum(0)
        frames_seen += len(frames)
    mean = total / frames_seen
    std = (squares / frames_seen - mean**2).clamp_min(1e-8).sqrt()
    return mean.float(), std.float()


@torch.no_grad()
def validate(model: CTCModel, utterances: list[Utterance], batch_seconds: float,
             device: torch.device) -> tuple[ErrorRates, float]:
    """Greedy WER/CER and mean CTC loss of `model` on `utterances`."""
    model.eval()
    dataset = SpeechDataset(utterances, model.vocab)
    sampler = BucketBatchSampler([u.duration for u in utterances], batch_seconds, shuffle=False)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=0,
                        generator=torch.Generator())
    rates, loss_sum = ErrorRates(), 0.0
    for indices, (audio, audio_lengths, targets, target_lengths) in zip(sampler, loader,
                                                                        strict=True):
        log_probs, lengths = model.transcribe_audio(audio.to(device), audio_lengths)
        loss_sum += nn.functional.ctc_loss(
            log_probs.float().transpose(0, 1), targets, lengths.cpu(), target_lengths,
            blank=model.vocab.blank_id, reduction="sum", zero_infinity=True).item()
        for row, index in enumerate(indices):
            hyp = greedy_decode(log_probs[row, : lengths[row]].float().cpu().numpy(),
                                model.vocab, model.frame_seconds)
            rates.add(utterances[index].text, hyp.text)
    model.train()
    return rates, loss_sum / max(len(utterances), 1)


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to train under bf16 autocast: "auto" means on CUDA and on CPUs with native bf16
    (AVX512-BF16 or AMX), where it is about 1.5x faster than fp32; emulated bf16 is slower."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" or (device.type == "cpu" and (
        torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()))


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


class _StopFlag:
    """Within `with`, SIGTERM/SIGINT become a request to save and stop at the next step."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopFlag:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True


def _log(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def train(config: TrainConfig, resume: bool = False) -> Progress:
    """Train (or resume) a model in `config.out_dir`; returns where training got to."""
    run = _Run()
    out = Path(config.out_dir)
    checkpoint = None
    if resume and (out / LAST).is_file():
        checkpoint = load_file(out / LAST, weights_only=False)
        saved = TrainConfig.from_dict(checkpoint["config"])
        config = replace(saved, epochs=config.epochs, max_minutes=config.max_minutes,
                         max_steps=config.max_steps, workers=config.workers,
                         threads=config.threads, precision=config.precision)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)

    train_set = load_utterances(config.train, config.max_duration)
    if config.dev:
        dev_set = load_utterances(config.dev, config.max_duration)
    else:
        train_set, dev_set = split_by_speaker(train_set, config.dev_fraction, config.seed)
    if not train_set:
        raise ValueError("no training utterances (check the manifests and --max-duration)")

    if checkpoint:
        model = model_from_payload(checkpoint["model"])
    elif config.init:
        model = load_model(config.init)
        if model.dims != config.dims:
            raise ValueError(f"--init model has dimensions {model.dims}, not {config.dims}")
    else:
        model = CTCModel(config.dims)
        model.feature_mean, model.feature_std = feature_stats(
            model, train_set, config.stats_utterances, config.seed)
    model.to(run.device).train()
    net = (DistributedDataParallel(model, device_ids=[run.device.index] if run.device.index
                                   is not None else None) if run.world > 1 else model)

    dataset = SpeechDataset(train_set, model.vocab, config.augment, config.seed)
    sampler = BucketBatchSampler([u.duration for u in train_set], config.batch_seconds,
                                 config.seed, rank=run.rank, world_size=run.world,
                                 sortagrad=config.sortagrad)
    total_steps = config.epochs * len(sampler)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, config.warmup_steps, total_steps))
    progress = Progress()
    if checkpoint:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        progress = Progress(**checkpoint["progress"])
        torch.set_rng_state(checkpoint["rng"])
    elif run.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG).write_text(json.dumps(asdict(config), indent=2))

    def save() -> None:
        if run.main:
            atomic_save({"model": model_payload(model), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "progress": asdict(progress),
                         "rng": torch.get_rng_state(), "config": asdict(config)}, out / LAST)

    if run.main:
        print(f"training on {total_hours(train_set):.2f} h ({len(train_set)} utterances), "
              f"dev {total_hours(dev_set):.2f} h ({len(dev_set)}), "
              f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
              f"device {run.device}, {run.world} process(es)", file=sys.stderr)
    with _StopFlag() as stop:
        _loop(config, run, model, net, dataset, sampler, dev_set, optimizer, scheduler, progress,
              stop, save)
    run.close()
    return progress


def _loop(config: TrainConfig, run: _Run, model: CTCModel, net: nn.Module,
          dataset: SpeechDataset, sampler: BucketBatchSampler, dev_set: list[Utterance],
          optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
          progress: Progress, stop: _StopFlag, save: Callable[[], None]) -> None:
    """Epochs and steps until done or asked to stop; `progress` is updated in place."""
    out = Path(config.out_dir)
    use_amp = use_bf16(config.precision, run.device)
    started = last_save = time.monotonic()
    seconds_before, steps_before = progress.seconds, progress.step
    while progress.epoch < config.epochs:
        dataset.set_epoch(progress.epoch)
        sampler.set_epoch(progress.epoch, skip=progress.batch)
        # the loader's own generator keeps the global RNG (dropout) exact across resumes
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                            num_workers=config.workers, pin_memory=run.device.type == "cuda",
                            generator=torch.Generator().manual_seed(config.seed))
        bar = tqdm(total=len(sampler), initial=progress.batch, disable=not run.main,
                   desc=f"epoch {progress.epoch + 1}/{config.epochs}", unit="batch",
                   dynamic_ncols=True)
        for audio, audio_lengths, targets, target_lengths in loader:
            with torch.no_grad():
                frames, frame_lengths = model.log_mel(audio.to(run.device, non_blocking=True),
                                                      audio_lengths)
                if config.augment.freq_masks or config.augment.time_masks:
                    generator = torch.Generator().manual_seed(config.seed * 7919 + progress.step)
                    frames = spec_augment(frames, frame_lengths, config.augment,
                                          model.feature_mean, generator)
            with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=use_amp):
                log_probs, lengths = net(frames, frame_lengths.to(run.device))
            loss = nn.functional.ctc_loss(
                log_probs.float().transpose(0, 1), targets.to(run.device), lengths,
                target_lengths.to(run.device), blank=model.vocab.blank_id, zero_infinity=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), config.clip))
            optimizer.step()
            scheduler.step()
            progress.step += 1
            progress.batch += 1
            progress.seconds = seconds_before + time.monotonic() - started
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if run.main and progress.step % config.log_every == 0:
                _log(out / METRICS, {
                    "step": progress.step, "epoch": progress.epoch, "loss": round(loss.item(), 4),
                    "grad_norm": round(grad_norm, 3), "lr": scheduler.get_last_lr()[0],
                    "seconds": round(progress.seconds, 1)})
            out_of_time = (config.max_minutes > 0
                           and time.monotonic() - started > config.max_minutes * 60)
            out_of_steps = config.max_steps > 0 and progress.step - steps_before >= config.max_steps
            if run.any(out_of_time or out_of_steps or stop.requested):
                bar.close()
                save()
                return
            if time.monotonic() - last_save > config.save_minutes * 60:
                save()
                last_save = time.monotonic()
        bar.close()
        progress.epoch += 1
        progress.batch = 0
        if run.main:
            rates, dev_loss = validate(model, dev_set, config.batch_seconds, run.device)
            record = {"step": progress.step, "epoch": progress.epoch,
                      "dev_loss": round(dev_loss, 4), "dev_wer": round(rates.wer, 4),
                      "dev_cer": round(rates.cer, 4), "seconds": round(progress.seconds, 1)}
            _log(out / METRICS, record)
            tqdm.write(f"epoch {progress.epoch}: dev loss {dev_loss:.3f}, WER {rates.wer:.2%}, "
                       f"CER {rates.cer:.2%}", file=sys.stderr)
            if dev_loss < progress.best_loss:
                progress.best_loss = dev_loss
                save_model(model, out / BEST, epoch=progress.epoch, dev_wer=rates.wer,
                           dev_cer=rates.cer, hours=total_hours(dataset.utterances))
        save()
        last_save = time.monotonic()
        run.barrier()

