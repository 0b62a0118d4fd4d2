"""Training: CTC loss, bf16 autocast where the hardware has it, DDP under torchrun, exact resume.

Files in the output folder: `config.json`, `last.pt` (everything needed to resume),
`model.pt` (the model with the lowest dev CTC loss so far: early in training
WER favours models that say little; without a dev set, the latest epoch's model),
`metrics.jsonl` (one JSON object per logged step or epoch, for plotting).

A run survives what clusters do to it: SIGTERM or SIGINT, to the main process or to the whole
process group, saves `last.pt` and stops; recordings that cannot be read are left out with a
warning; after a kill, `--resume` drops the metrics logged after the last save.
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
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from asr.augment import AugmentConfig, spec_augment
from asr.checkpoint import (
    ModelFileError,
    atomic_save,
    load_file,
    load_model,
    model_from_payload,
    model_payload,
    save_model,
)
from asr.corpora import Utterance, read_corpus, split_by_speaker, total_hours
from asr.data import (
    STOP_SIGNALS,
    AudioStore,
    Batch,
    BucketBatchSampler,
    SpeechDataset,
    check_audio,
    collate,
    ignore_stop_signals,
    start_workers,
)
from asr.decode import greedy_decode
from asr.defaults import PRECISIONS
from asr.metrics import ErrorRates
from asr.model import CTCModel, ModelDims, grow

LAST, BEST, METRICS, CONFIG = "last.pt", "model.pt", "metrics.jsonl", "config.json"
# what last.pt holds: metrics_bytes is the length of metrics.jsonl when it was saved
STATE_KEYS = {"model", "optimizer", "scheduler", "progress", "rng", "config", "metrics_bytes"}
SHOWN_PROBLEMS = 5  # unreadable recordings named before training starts
T = TypeVar("T")


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
    intermediate_ctc: float = 0.0  # weight of a CTC loss on the middle LSTM layer's outputs
    workers: int = 2
    preload: str | None = None  # folder of an AudioStore of the training audio
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
    loss_sum: float = 0.0  # training loss summed over this epoch's steps
    loss_steps: int = 0  # steps in loss_sum


class Run:
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

    def share(self, obj: T) -> T:
        """Rank 0's `obj` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            dist.destroy_process_group()


def load_utterances(paths: list[str], max_duration: float) -> list[Utterance]:
    utterances = [u for path in paths for u in read_corpus(path)]
    return [u for u in utterances if u.duration <= max_duration]


def readable(run: Run, utterances: list[Utterance], name: str) -> list[Utterance]:
    """`utterances` less those whose audio is missing or unreadable (rank 0 checks and says
    which, every rank gets its list)."""
    if not run.main:
        return run.share([])
    good, problems = check_audio(utterances)
    if problems:
        shown = problems[:SHOWN_PROBLEMS]
        if len(problems) > SHOWN_PROBLEMS:
            shown.append(f"... and {len(problems) - SHOWN_PROBLEMS} more")
        print(f"leaving out {len(problems)} of {len(utterances)} {name} utterances whose audio "
              "cannot be read:", *shown, sep="\n  ", file=sys.stderr)
    return run.share(good)


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
        audio = dataset[int(i)].audio
        if audio is None:
            continue
        frames, _ = model.log_mel(audio[None], torch.tensor([len(audio)]))
        frames = frames[0].double()
        total += frames.sum(0)
        squares += (frames**2).sum(0)
        frames_seen += len(frames)
    if not frames_seen:
        raise ValueError("none of the sampled training recordings could be read")
    mean = total / frames_seen
    std = (squares / frames_seen - mean**2).clamp_min(1e-8).sqrt()
    return mean.float(), std.float()


@torch.no_grad()
def validate(model: CTCModel, utterances: list[Utterance], batch_seconds: float,
             device: torch.device, errors: list[str]) -> tuple[ErrorRates, float]:
    """Greedy WER/CER and mean CTC loss of `model` on `utterances`; those that cannot be read
    are left out and their errors added to `errors`."""
    model.eval()
    dataset = SpeechDataset(utterances, model.vocab)
    sampler = BucketBatchSampler([u.duration for u in utterances], batch_seconds, shuffle=False)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=0,
                        generator=torch.Generator())
    rates, loss_sum, count = ErrorRates(), 0.0, 0
    for batch in loader:
        errors += batch.errors
        if not batch.indices:
            continue
        log_probs, lengths = model.transcribe_audio(batch.audio.to(device), batch.audio_lengths)
        loss_sum += nn.functional.ctc_loss(
            log_probs.float().transpose(0, 1), batch.targets, lengths.cpu(),
            batch.target_lengths, blank=model.vocab.blank_id, reduction="sum",
            zero_infinity=True).item()
        count += len(batch.indices)
        for row, index in enumerate(batch.indices):
            hyp = greedy_decode(log_probs[row, : lengths[row]].float().cpu().numpy(),
                                model.vocab, model.frame_seconds)
            rates.add(utterances[index].text, hyp.text)
    model.train()
    return rates, loss_sum / max(count, 1)


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

    def __init__(self) -> None:
        self.requested = ""  # the name of the signal received
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopFlag:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = signal.Signals(signum).name


def _log(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _load_state(path: Path) -> tuple[dict, TrainConfig, Progress]:
    """The training state saved in `path` (last.pt), its configuration and progress."""
    state = load_file(path)
    missing = STATE_KEYS - set(state) if isinstance(state, dict) else STATE_KEYS
    if missing:
        raise ModelFileError(f"{path}: not a training checkpoint of this version of lstm-asr "
                             f"(no {', '.join(sorted(missing))}); start a new run, with --init "
                             "from it if it holds a model")
    try:
        return state, TrainConfig.from_dict(state["config"]), Progress(**state["progress"])
    except (KeyError, TypeError, AttributeError) as error:
        raise ModelFileError(f"{path}: its configuration or progress is unusable ({error})"
                             ) from None


def train(config: TrainConfig, resume: bool = False) -> Progress:
    """Train (or resume) a model in `config.out_dir`; returns where training got to."""
    run = Run()
    out = Path(config.out_dir)
    checkpoint, progress = None, Progress()
    if resume and (out / LAST).is_file():
        checkpoint, saved, progress = _load_state(out / LAST)
        config = replace(saved, epochs=config.epochs, max_minutes=config.max_minutes,
                         max_steps=config.max_steps, workers=config.workers,
                         preload=config.preload, threads=config.threads,
                         precision=config.precision)
    if config.intermediate_ctc:
        if not 0 < config.intermediate_ctc < 1:
            raise ValueError(f"the intermediate CTC weight must be between 0 and 1, not "
                             f"{config.intermediate_ctc}")
        intermediate_layer(config.dims)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)

    train_set = readable(run, load_utterances(config.train, config.max_duration), "training")
    if config.dev:
        dev_set = readable(run, load_utterances(config.dev, config.max_duration), "dev")
    else:
        train_set, dev_set = split_by_speaker(train_set, config.dev_fraction, config.seed)
    if not train_set:
        raise ValueError("no training utterances (check the manifests and --max-duration)")

    if checkpoint:
        model = model_from_payload(checkpoint["model"], out / LAST)
    elif config.init:
        model = load_model(config.init)
        before, model = model.dims, grow(model, config.dims, config.seed)
        if model.dims != before and run.main:
            print(f"{config.init}: {before.hidden} -> {model.dims.hidden} units per direction, "
                  f"look-ahead {before.lookahead} -> {model.dims.lookahead} frames, dropout "
                  f"{before.dropout} -> {model.dims.dropout} (at first the same function)",
                  file=sys.stderr)
    else:
        model = CTCModel(config.dims)
        model.feature_mean, model.feature_std = feature_stats(
            model, train_set, config.stats_utterances, config.seed)
    model.to(run.device).train()
    net = (DistributedDataParallel(model, device_ids=[run.device.index] if run.device.index
                                   is not None else None) if run.world > 1 else model)

    dataset, sampler = training_data(config, run, train_set, model)
    total_steps = config.epochs * len(sampler)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, config.warmup_steps, total_steps))
    if checkpoint:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        torch.set_rng_state(checkpoint["rng"])
        if run.main:  # drop what was logged after the save being resumed
            _truncate(out / METRICS, checkpoint["metrics_bytes"])
    elif run.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG).write_text(json.dumps(asdict(config), indent=2))

    def save() -> None:
        if run.main:
            metrics = out / METRICS
            atomic_save({"model": model_payload(model), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "progress": asdict(progress),
                         "rng": torch.get_rng_state(), "config": asdict(config),
                         "metrics_bytes": metrics.stat().st_size if metrics.is_file() else 0},
                        out / LAST)

    if run.main:
        dev = (f"dev {total_hours(dev_set):.2f} h ({len(dev_set)})" if dev_set else
               "no dev set (model.pt will be the latest epoch's)")
        print(f"training on {total_hours(train_set):.2f} h ({len(train_set)} utterances), {dev}, "
              f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
              f"device {run.device}, {run.world} process(es)", file=sys.stderr)
    with _StopFlag() as stop:
        _loop(config, run, model, net, dataset, sampler, dev_set, optimizer, scheduler, progress,
              stop, save)
    if stop.requested and run.main:
        print(f"{stop.requested}: saved {out / LAST}", file=sys.stderr)
    run.close()
    return progress


def _truncate(path: Path, size: int) -> None:
    """Cut `path` back to `size` bytes if it is longer."""
    if path.is_file() and path.stat().st_size > size:
        os.truncate(path, size)


def training_data(config: TrainConfig, run: Run, utterances: list[Utterance],
                  model: CTCModel) -> tuple[SpeechDataset, BucketBatchSampler]:
    """The augmented training set (read from an `AudioStore` under `config.preload`, which rank
    0 builds first if needed) and its batch sampler."""
    store = None
    if config.preload:
        if run.main:
            AudioStore.build(config.preload, utterances)
        run.barrier()
        store = AudioStore(config.preload, utterances)
    dataset = SpeechDataset(utterances, model.vocab, config.augment, config.seed, store)
    sampler = BucketBatchSampler([u.duration for u in utterances], config.batch_seconds,
                                 config.seed, rank=run.rank, world_size=run.world,
                                 sortagrad=config.sortagrad)
    return dataset, sampler


def training_loader(config: TrainConfig, run: Run, dataset: SpeechDataset,
                    sampler: BucketBatchSampler) -> DataLoader:
    """The loader of one epoch (set the dataset's and the sampler's epoch first); its own
    generator keeps the global RNG (dropout) exact across resumes."""
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                      num_workers=config.workers, pin_memory=run.device.type == "cuda",
                      worker_init_fn=ignore_stop_signals,
                      generator=torch.Generator().manual_seed(config.seed))


def _loop(config: TrainConfig, run: Run, model: CTCModel, net: nn.Module,
          dataset: SpeechDataset, sampler: BucketBatchSampler, dev_set: list[Utterance],
          optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
          progress: Progress, stop: _StopFlag, save: Callable[[], None]) -> None:
    """Epochs and steps until done or asked to stop; `progress` is updated in place."""
    out = Path(config.out_dir)
    use_amp = use_bf16(config.precision, run.device)
    started = last_save = time.monotonic()
    seconds_before, steps_before = progress.seconds, progress.step
    while progress.epoch < config.epochs and not run.any(bool(stop.requested)):
        dataset.set_epoch(progress.epoch)
        sampler.set_epoch(progress.epoch, skip=progress.batch)
        loader = training_loader(config, run, dataset, sampler)
        bar = tqdm(total=len(sampler), initial=progress.batch, disable=not run.main,
                   desc=f"epoch {progress.epoch + 1}/{config.epochs}", unit="batch",
                   dynamic_ncols=True)
        unreadable: list[str] = []
        for batch in start_workers(loader):
            unreadable += batch.errors
            progress.batch += 1
            bar.update()
            if run.any(not batch.indices):  # no readable audio in a batch (of some rank)
                continue
            loss, grad_norm = _step(config, run, model, net, batch, optimizer, use_amp,
                                    progress.step)
            scheduler.step()
            progress.step += 1
            progress.loss_sum += loss
            progress.loss_steps += 1
            progress.seconds = seconds_before + time.monotonic() - started
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if run.main and progress.step % config.log_every == 0:
                _log(out / METRICS, {
                    "step": progress.step, "epoch": progress.epoch, "loss": round(loss, 4),
                    "grad_norm": round(grad_norm, 3), "lr": scheduler.get_last_lr()[0],
                    "seconds": round(progress.seconds, 1)})
            out_of_time = (config.max_minutes > 0
                           and time.monotonic() - started > config.max_minutes * 60)
            out_of_steps = config.max_steps > 0 and progress.step - steps_before >= config.max_steps
            if run.any(out_of_time or out_of_steps or bool(stop.requested)):
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
            _end_epoch(config, run, model, dev_set, progress, unreadable,
                       total_hours(dataset.utterances))
        progress.loss_sum, progress.loss_steps = 0.0, 0
        save()
        last_save = time.monotonic()
        run.barrier()


@torch.no_grad()
def training_features(config: TrainConfig, run: Run, model: CTCModel, batch: Batch,
                      step: int) -> tuple[Tensor, Tensor]:
    """Log-mel frames of `batch` on the training device, SpecAugmented as configured."""
    frames, frame_lengths = model.log_mel(batch.audio.to(run.device, non_blocking=True),
                                          batch.audio_lengths)
    if config.augment.freq_masks or config.augment.time_masks:
        generator = torch.Generator().manual_seed(config.seed * 7919 + step)
        frames = spec_augment(frames, frame_lengths, config.augment, model.feature_mean,
                              generator)
    return frames, frame_lengths


def _step(config: TrainConfig, run: Run, model: CTCModel, net: nn.Module, batch: Batch,
          optimizer: torch.optim.Optimizer, use_amp: bool, step: int) -> tuple[float, float]:
    """One optimiser step on `batch`; returns the last layer's CTC loss and the gradient norm."""
    frames, frame_lengths = training_features(config, run, model, batch, step)
    weight = config.intermediate_ctc
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=use_amp):
        log_probs, lengths = net(frames, frame_lengths.to(run.device),
                                 intermediate_layer(model.dims) if weight else 0)
    targets, target_lengths = batch.targets.to(run.device), batch.target_lengths.to(run.device)

    def ctc(layer_log_probs: Tensor) -> Tensor:
        return nn.functional.ctc_loss(layer_log_probs.float().transpose(0, 1), targets, lengths,
                                      target_lengths, blank=model.vocab.blank_id,
                                      zero_infinity=True)

    if weight:
        loss = ctc(log_probs[0])
        total = (1 - weight) * loss + weight * ctc(log_probs[1])
    else:
        loss = total = ctc(log_probs)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), config.clip))
    optimizer.step()
    return loss.item(), grad_norm


def intermediate_layer(dims: ModelDims) -> int:
    """The LSTM layer an intermediate CTC loss reads: the middle one (1-based)."""
    if dims.layers < 2:
        raise ValueError("an intermediate CTC loss needs at least 2 LSTM layers")
    return dims.layers // 2


def _end_epoch(config: TrainConfig, run: Run, model: CTCModel, dev_set: list[Utterance],
               progress: Progress, unreadable: list[str], hours: float) -> None:
    """Rank 0 after an epoch: log and print the training loss (and the dev loss, WER and CER),
    warn about recordings that could not be read, and write model.pt when it is the best so
    far by dev loss (every epoch without a dev set)."""
    out = Path(config.out_dir)
    train_loss = progress.loss_sum / max(progress.loss_steps, 1)
    record = {"step": progress.step, "epoch": progress.epoch, "train_loss": round(train_loss, 4)}
    message = f"epoch {progress.epoch}: train loss {train_loss:.3f}"
    info: dict = {"epoch": progress.epoch, "hours": hours}
    best = True
    if dev_set:
        rates, dev_loss = validate(model, dev_set, config.batch_seconds, run.device, unreadable)
        record |= {"dev_loss": round(dev_loss, 4), "dev_wer": round(rates.wer, 4),
                   "dev_cer": round(rates.cer, 4)}
        message += f", dev loss {dev_loss:.3f}, WER {rates.wer:.2%}, CER {rates.cer:.2%}"
        info |= {"dev_wer": rates.wer, "dev_cer": rates.cer}
        best = dev_loss < progress.best_loss
        if best:
            progress.best_loss = dev_loss
    if unreadable:
        record["unreadable"] = len(unreadable)
    _log(out / METRICS, {**record, "seconds": round(progress.seconds, 1)})
    tqdm.write(message, file=sys.stderr)
    if unreadable:
        tqdm.write(f"epoch {progress.epoch}: left out {len(unreadable)} utterance(s) whose audio "
                   f"could not be read, first {unreadable[0]}", file=sys.stderr)
    if best:
        save_model(model, out / BEST, **info)
