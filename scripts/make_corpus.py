"""Build a reproducible training corpus: the real shared speech plus synthetic speech.

    python scripts/make_corpus.py --out work/corpus --jobs 16 --hours 100
    python scripts/make_corpus.py --out work/corpus --limit 2000      # the first 2000 prompts
    python scripts/make_corpus.py --list-voices                       # voices, licences, status

Real speech: the shared manifest split by speaker exactly as scripts/split_shared_speech.py
does (--dev-fraction 0.06, --split-seed 0).

Synthetic speech: every offline English voice of flite, festival, espeak-ng (with MBROLA en1),
RHVoice and SVOX Pico whose licence lets anyone use the trained model (--list-voices; the
voices and engines are the tables in scripts/corpus_voices.py). Prompt i (the prompt files
concatenated in order, duplicates dropped) gets from np.random.default_rng([seed, i]) a voice,
the engine's own speaking rate and pitch, and a plan of signal perturbations
(scripts/corpus_augment.py: tempo and pitch, vocal-tract-length warping, room reverberation,
leading/trailing silence, noise at 0-30 dB SNR, telephone band, 8 kHz, MP3/Opus/Vorbis at low
bit rates, output level). About --empty-share of the items hold no speech at all (dithered
silence, room tone, noise, hum; 0.5-5 s) and have the empty transcript "".

Real speech multiplied (--real-copies K): each real training utterance also gets K copies, each
through its own seeded plan of the same perturbations (tempo and pitch, vocal tract, room,
noise, channel, codec, level), as new speakers "<speaker>~k"; the real speakers are the only
natural human speech in the corpus, and the test speakers are real.

Held out: the voices marked held_out (RHVoice clb, Pico en-GB, festival ked: three engines,
speakers no training voice shares) never reach train.jsonl; --dev-per-voice utterances of
each, read from prompts reserved at the end of the prompt list, go to dev_native.jsonl.

Outputs (JSON lines: audio, text, duration, speaker, source, and for synthetic items voice
and the augmentation steps; audio relative to the manifest when under --out):
  train.jsonl       real training speakers (+ their copies) + synthetic.jsonl
  synthetic.jsonl   the synthetic training items (including the empty ones)
  dev.jsonl         the real held-out speakers, as before (speechocean762 + an4)
  dev_native.jsonl  native English for model selection: the shared native_dev.jsonl
                    (referenced, never trained on) + the held-out synthetic voices + the
                    held-out speakers of every real dataset but speechocean762
  dev_so762.jsonl   the held-out speechocean762 speakers (non-native), to report apart
  summary.json      hours per source, per voice, per manifest; generation speed per engine
Audio: OUT/audio/<voice>/<i>.flac (16 kHz mono FLAC); the voice is the speaker.

Reproducible and resumable: rerunning with the same arguments (and the same engines
available) renders only the items whose file is missing and rebuilds identical manifests, so a
killed run is finished, or a corpus grown (larger --hours), by running again. Files are written
atomically; items that fail to render are left out with a warning and retried next time.

Machine without apt: run scripts/fetch_tts_debs.sh DIR where apt works, unpack the .deb files
there with `for d in DIR/*.deb; do dpkg -x $d $PWD/tts; done` and pass --tts-root $PWD/tts;
RHVoice's and Pico's compiled-in data paths are rewritten in that copy (corpus_voices.relocate).
Engines whose programs or data are missing are skipped with a warning.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # corpus_voices, corpus_augment

import corpus_augment as aug  # noqa: E402
import corpus_voices as cv  # noqa: E402

from asr.audio import SAMPLE_RATE, load_audio, resample  # noqa: E402
from asr.corpora import (  # noqa: E402
    CorpusError,
    Utterance,
    read_manifest,
    split_by_speaker,
    write_manifest,
)
from asr.defaults import SHARED_DATA  # noqa: E402
from asr.text import normalize_text  # noqa: E402

DEFAULT_PROMPTS = (SHARED_DATA / "text/prompts_phonrich.txt.gz",
                   SHARED_DATA / "text/prompts.txt.gz")
DEFAULT_REAL = SHARED_DATA / "speech/manifest.jsonl"
DEFAULT_NATIVE_DEV = SHARED_DATA / "speech/native_dev.jsonl"
NON_NATIVE_DATASET = "speechocean762"
AUDIO_SUFFIX = ".flac"
TEMP_DIR = ".tmp"  # under --out: the synthesisers' WAV files, removed at the end
NO_SPEECH = "no-speech"  # speaker, source and folder of the empty-transcript items
EMPTY_SECONDS = (0.5, 5.0)
EMPTY_LEVEL_DB = (-65.0, -20.0)  # RMS of room tone, noise and hum
REAL_COPIES_DIR = "real-copies"  # OUT/audio/real-copies/<k>/<key>.flac
REFERENCE_CORES, REFERENCE_HOURS = 16, 100.0  # the estimate printed with the speeds
SECONDS_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total} s [{elapsed}<{remaining}]"


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to render any item; the same settings give the same corpus."""

    out: Path
    prompts: tuple[str, ...]
    voices: tuple[cv.Voice, ...]  # training voices
    dev_voices: tuple[cv.Voice, ...]  # held-out voices available here
    seed: int
    stretch: tuple[float, float]  # engine duration stretch range (>1 is slower)
    semitones: float  # engine pitch shift drawn from [-semitones, +semitones]
    empty_share: float
    dev_per_voice: int
    augment: bool = True
    tts_root: Path | None = None

    @property
    def reserved(self) -> int:
        """Prompts kept at the end of the list for the held-out voices (whether or not they
        run here, so the training prompts never depend on it)."""
        held_out = sum(v.held_out for v in cv.VOICES)
        return min(self.dev_per_voice * held_out, len(self.prompts) // 2)

    @property
    def train_prompts(self) -> int:
        return len(self.prompts) - self.reserved


@dataclass(frozen=True)
class Item:
    """The deterministic recipe of one utterance."""

    index: int
    text: str  # "" for the no-speech items
    voice: cv.Voice | None  # None: no speech
    prosody: cv.Prosody
    empty_kind: str
    empty_seconds: float
    empty_level_db: float
    steps: tuple[tuple[str, tuple], ...]
    peak_db: float
    path: Path = field(compare=False)

    @property
    def speaker(self) -> str:
        return self.voice.name if self.voice else NO_SPEECH

    @property
    def source(self) -> str:
        return self.voice.source if self.voice else NO_SPEECH


# ---------------------------------------------------------------------------- planning


def read_prompts(paths: Iterable[Path]) -> list[str]:
    """Normalised prompts of (gzipped) text files in order, empty lines and repeats dropped."""
    seen: set[str] = set()
    prompts = []
    for path in paths:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as file:
            for line in file:
                text = normalize_text(line)
                if text and text not in seen:
                    seen.add(text)
                    prompts.append(text)
    return prompts


def _choose(rng: np.random.Generator, voices: Sequence[cv.Voice]) -> cv.Voice:
    weights = np.array([v.weight for v in voices])
    return voices[rng.choice(len(voices), p=weights / weights.sum())]


def plan_item(settings: Settings, index: int) -> Item:
    """Voice, prosody and augmentation of item `index`, from seeded generators only.

    Items below settings.train_prompts are training items (a share of them without speech);
    the reserved ones above are read by the held-out voices in turn."""
    rng = np.random.default_rng([settings.seed, index])
    empty = rng.random() < settings.empty_share
    stretch = round(float(rng.uniform(*settings.stretch)), 3)
    semitones = round(float(rng.uniform(-settings.semitones, settings.semitones)), 2)
    empty_kind = str(rng.choice(aug.EMPTY_KINDS))
    empty_seconds = round(float(rng.uniform(*EMPTY_SECONDS)), 2)
    empty_level = round(float(rng.uniform(*EMPTY_LEVEL_DB)), 1)
    peak_db = round(float(rng.uniform(*aug.PEAK_DB)), 1)
    if index >= settings.train_prompts:  # held out
        empty = False
        voice: cv.Voice | None = settings.dev_voices[
            (len(settings.prompts) - 1 - index) % len(settings.dev_voices)]
    else:
        voice = _choose(rng, settings.voices)
    if empty:
        voice = None
    plan_rng = np.random.default_rng([settings.seed, index, 1])
    steps = aug.plan_augmentations(plan_rng, empty) if settings.augment else ()
    folder = voice.name if voice else NO_SPEECH
    path = settings.out / "audio" / folder / f"{index:07d}{AUDIO_SUFFIX}"
    return Item(index, "" if empty else settings.prompts[index], voice,
                cv.Prosody(stretch, semitones), empty_kind, empty_seconds, empty_level, steps,
                peak_db, path)


def dev_indices(settings: Settings) -> list[int]:
    """Item indices of the held-out voices' utterances (the last reserved prompts)."""
    if not settings.dev_voices:
        return []
    count = settings.dev_per_voice * len(settings.dev_voices)
    total = len(settings.prompts)
    return [total - 1 - k for k in range(min(count, settings.reserved))]


# ---------------------------------------------------------------------------- rendering


def synthesise(tools: cv.Tools, item: Item, seed: int) -> np.ndarray:
    """The item's speech (float32 at SAMPLE_RATE) from its engine, or its no-speech audio."""
    if item.voice is None:
        return aug.empty_audio(item.empty_kind, item.empty_seconds, item.empty_level_db,
                               np.random.default_rng([seed, item.index, 3]))
    wav = tools.temp_dir / f"{item.index}.wav"
    try:
        cv.render(tools, item.voice, item.text, item.prosody, wav)
        samples, rate = sf.read(wav, dtype="float32", always_2d=True)
    finally:
        wav.unlink(missing_ok=True)
    samples = resample(samples.mean(axis=1), rate, SAMPLE_RATE)
    if samples.size == 0 or not np.any(samples):
        raise cv.RenderError(f"{item.voice.engine} wrote silence")
    return samples


def finish(audio: np.ndarray, item: Item, seed: int) -> np.ndarray:
    """The planned augmentation steps, then the output level (speech only)."""
    audio = aug.apply_augmentations(audio, item.steps, np.random.default_rng([seed, item.index, 2]))
    return audio if item.voice is None else aug.set_level(audio, item.peak_db)


def write_audio(path: Path, audio: np.ndarray) -> None:
    """Write 16-bit FLAC at SAMPLE_RATE atomically (a temp file in the folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(temp, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def cpu_seconds(tools: cv.Tools) -> float:
    """CPU time of this process, its finished children and its long-lived engine processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = time.process_time() + children.ru_utime + children.ru_stime
    for state in tools.cache.values():
        process = getattr(state, "process", None)
        if process is not None and process.poll() is None:
            try:
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, IndexError, ValueError):
                continue
    return total


@dataclass(frozen=True)
class Result:
    """What one worker call reports."""

    index: int
    duration: float | None  # None: failed
    status: str  # rendered, reused, failed: why
    source: str = ""
    synth_cpu: float = 0.0
    augment_cpu: float = 0.0


_worker: dict = {}


def init_worker(settings: Settings) -> None:
    """Pool initializer: one set of engine tools (and festival process) per worker."""
    _worker["settings"] = settings
    _worker["tools"] = cv.Tools(settings.tts_root, settings.out / TEMP_DIR)


def process_item(index: int) -> Result:
    """Render item `index` unless its file exists."""
    settings: Settings = _worker["settings"]
    tools: cv.Tools = _worker["tools"]
    item = plan_item(settings, index)
    if item.path.is_file():
        return Result(index, sf.info(str(item.path)).duration, "reused", item.source)
    try:
        start = cpu_seconds(tools)
        audio = synthesise(tools, item, settings.seed)
        middle = cpu_seconds(tools)
        audio = finish(audio, item, settings.seed)
        end = cpu_seconds(tools)
        write_audio(item.path, audio)
    except Exception as error:  # noqa: BLE001 - one bad item must not stop the run
        return Result(index, None, f"failed: {item.speaker}: {error}", item.source)
    return Result(index, audio.size / SAMPLE_RATE, "rendered", item.source, middle - start,
                  end - middle)


@contextmanager
def item_runner(settings: Settings, jobs: int,
                function: Callable = process_item) -> Iterator[Callable[[Iterable], Iterator]]:
    """A function mapping `function` over tasks, in `jobs` worker processes when > 1."""
    if jobs <= 1:
        init_worker(settings)
        try:
            yield lambda tasks: map(function, tasks)
        finally:
            _worker["tools"].close()
        return
    with Pool(jobs, initializer=init_worker, initargs=(settings,)) as pool:
        yield lambda tasks: pool.imap_unordered(function, tasks, chunksize=4)


class Progress:
    """Collects worker results: durations, status counts and CPU time per source."""

    def __init__(self) -> None:
        self.durations: dict[int, float] = {}
        self.seconds = 0.0  # the sum of `durations`
        self.counts: dict[str, int] = defaultdict(int)
        self.speed: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def consume(self, results: Iterable[Result], bar: tqdm, by_seconds: bool) -> None:
        for result in results:
            self.counts[result.status.split(":")[0]] += 1
            if result.duration is None:
                bar.write(f"warning: item {result.index} {result.status}")
            else:
                self.durations[result.index] = result.duration
                self.seconds += result.duration
                if result.status == "rendered":
                    stats = self.speed[result.source]
                    stats["audio_s"] += result.duration
                    stats["synth_cpu_s"] += result.synth_cpu
                    stats["augment_cpu_s"] += result.augment_cpu
                    stats["items"] += 1
            step = (result.duration or 0.0) if by_seconds else 1
            bar.update(min(step, max(bar.total - bar.n, 0)))  # a bar past its total shows None


def render_corpus(settings: Settings, limit: int | None, hours: float | None, jobs: int,
                  minutes: float = 0.0, first: int = 0,
                  ) -> tuple[dict[int, float], list[int], Progress]:
    """Render (or reuse) the training items from index `first` on (`limit` of them, or the
    shortest run holding `hours` of audio; no new batch of items starts after `minutes`, when
    > 0) and the held-out voices' items. Returns the training {index: duration}, the held-out
    indices that exist, and the progress record."""
    progress = Progress()
    count = (settings.train_prompts if limit is None
             else min(first + limit, settings.train_prompts))
    target = math.inf if hours is None else hours * 3600
    deadline = time.monotonic() + minutes * 60 if minutes > 0 else math.inf
    bar = (tqdm(total=max(count - first, 0), unit="utt", desc="training items")
           if hours is None else
           tqdm(total=round(target), unit="s", desc="training audio", bar_format=SECONDS_BAR))
    with item_runner(settings, jobs) as run:
        start, batch = first, max(64, 32 * jobs)
        with bar:
            while start < count and progress.seconds < target and time.monotonic() < deadline:
                stop = min(start + batch, count)
                progress.consume(run(range(start, stop)), bar, hours is not None)
                start = stop
        if start < count and progress.seconds < target:  # stopped by the deadline
            print(f"--max-minutes {minutes:g} reached at training item {start}; run again "
                  "to render more", file=sys.stderr)
        train, covered = {}, 0.0
        for index in sorted(progress.durations):  # the shortest run reaching the target
            if covered >= target:
                break
            train[index] = progress.durations[index]
            covered += progress.durations[index]
        dev = dev_indices(settings)
        with tqdm(total=len(dev), unit="utt", desc="held-out voices") as bar:
            progress.consume(run(dev), bar, False)
    return train, [i for i in dev if i in progress.durations], progress


@dataclass(frozen=True)
class RealCopy:
    """The deterministic recipe of copy `copy` (1, 2, ...) of a real training utterance."""

    entry: Entry
    copy: int
    key: str  # a digest of the audio's path relative to the real manifest: seeds and names it
    steps: tuple[tuple[str, tuple], ...]
    peak_db: float
    path: Path

    @staticmethod
    def plan(settings: Settings, entry: Entry, copy: int, relative: str) -> RealCopy:
        key = hashlib.sha1(relative.encode()).hexdigest()[:16]
        rng = np.random.default_rng([settings.seed, int(key, 16), copy])
        steps = aug.plan_augmentations(rng, False)
        peak_db = round(float(rng.uniform(*aug.PEAK_DB)), 1)
        path = settings.out / "audio" / REAL_COPIES_DIR / str(copy) / f"{key}{AUDIO_SUFFIX}"
        return RealCopy(entry, copy, key, steps, peak_db, path)

    def manifest_entry(self, duration: float) -> Entry:
        u = self.entry.utterance
        return Entry(Utterance(self.path, u.text, duration, f"{u.speaker}~{self.copy}"),
                     f"{self.entry.source}+copies",
                     (("copy_of", str(u.audio)), ("augment", aug.describe(self.steps))))


def process_real_copy(task: tuple[int, RealCopy]) -> Result:
    """Render a real copy (`task`: its position and recipe) unless its file exists."""
    position, item = task
    source = item.entry.source + "+copies"
    if item.path.is_file():
        return Result(position, sf.info(str(item.path)).duration, "reused", source)
    try:
        start = time.process_time()
        rng = np.random.default_rng([_worker["settings"].seed, int(item.key, 16), item.copy, 2])
        audio = aug.apply_augmentations(load_audio(item.entry.utterance.audio), item.steps, rng)
        audio = aug.set_level(audio, item.peak_db)
        write_audio(item.path, audio)
    except Exception as error:  # noqa: BLE001 - one bad item must not stop the run
        return Result(position, None, f"failed: {item.entry.utterance.audio}: {error}", source)
    return Result(position, audio.size / SAMPLE_RATE, "rendered", source,
                  augment_cpu=time.process_time() - start)


def render_real_copies(settings: Settings, items: list[RealCopy],
                       jobs: int) -> tuple[list[Entry], Progress]:
    """Render (or reuse) the real copies: the entries of those that exist, and the progress."""
    progress = Progress()
    with item_runner(settings, jobs, process_real_copy) as run, \
            tqdm(total=len(items), unit="utt", desc="real copies") as bar:
        progress.consume(run(enumerate(items)), bar, False)
    return [items[i].manifest_entry(d) for i, d in sorted(progress.durations.items())], progress


# ---------------------------------------------------------------------------- manifests


@dataclass(frozen=True)
class Entry:
    """One manifest line: an Utterance with where it came from."""

    utterance: Utterance
    source: str  # real dataset, synthetic engine, or no-speech
    extra: tuple[tuple[str, object], ...] = ()

    @property
    def hours(self) -> float:
        return self.utterance.duration / 3600


def write_entries(entries: Iterable[Entry], path: Path) -> None:
    """Write a JSON-lines manifest atomically; audio under its folder is written relative."""
    entries = list(entries)
    write_manifest([entry.utterance for entry in entries], path,
                   [{"duration": round(entry.utterance.duration, 4), "source": entry.source,
                     **dict(entry.extra)} for entry in entries])


def read_datasets(manifest: Path) -> dict[Path, str]:
    """Audio path -> `dataset` field of a shared-speech manifest (read_manifest drops it)."""
    base = Path(os.path.abspath(manifest.parent))
    datasets = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            datasets[Path(os.path.abspath(base / entry["audio"]))] = entry.get("dataset", "")
    return datasets


def real_entries(manifest: Path) -> list[Entry]:
    datasets = read_datasets(manifest)
    return [Entry(u, datasets.get(u.audio, "") or "unknown") for u in read_manifest(manifest)]


def synthetic_entry(settings: Settings, index: int, duration: float) -> Entry:
    item = plan_item(settings, index)
    extra: list[tuple[str, object]] = [("augment", aug.describe(item.steps))]
    if item.voice is not None:
        extra[:0] = [("voice", item.voice.name), ("stretch", item.prosody.stretch),
                     ("semitones", item.prosody.semitones)]
    else:
        extra[:0] = [("kind", item.empty_kind)]
    return Entry(Utterance(item.path, item.text, duration, item.speaker), item.source,
                 tuple(extra))


def _stats(entries: Sequence[Entry]) -> dict[str, float]:
    return {"utterances": len(entries), "hours": round(sum(e.hours for e in entries), 4)}


def _grouped(entries: Iterable[Entry], key: Callable[[Entry], str]) -> dict[str, dict]:
    groups: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        groups[key(entry)].append(entry)
    return {name: _stats(group) for name, group in sorted(groups.items())}


def summarise(manifests: dict[str, list[Entry]]) -> dict:
    """Hours and utterances of every manifest, by source and by speaker (voice)."""
    summary = {}
    for name, entries in manifests.items():
        summary[name] = {**_stats(entries),
                         "sources": _grouped(entries, lambda e: e.source)}
        synthetic = [e for e in entries if dict(e.extra).get("voice") or e.source == NO_SPEECH]
        if synthetic:
            summary[name]["voices"] = _grouped(synthetic, lambda e: e.utterance.speaker)
    return summary


def speed_table(speed: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per source: audio seconds per CPU second for synthesis, augmentation and both; and the
    wall-clock hours REFERENCE_HOURS of that mix would take on REFERENCE_CORES cores."""
    table = {}
    totals: dict[str, float] = defaultdict(float)
    for source, stats in sorted(speed.items()):
        for key, value in stats.items():
            totals[key] += value
        table[source] = _speed_row(stats)
    if totals:
        table["all"] = _speed_row(totals)
        table["all"]["hours_for_100h_on_16_cores"] = round(
            REFERENCE_HOURS / table["all"]["x_realtime"] / REFERENCE_CORES, 2)
    return table


def _speed_row(stats: dict[str, float]) -> dict[str, float]:
    cpu = stats["synth_cpu_s"] + stats["augment_cpu_s"]
    return {"items": int(stats["items"]), "audio_s": round(stats["audio_s"], 1),
            "synth_cpu_s": round(stats["synth_cpu_s"], 2),
            "augment_cpu_s": round(stats["augment_cpu_s"], 2),
            "x_realtime_synth": round(stats["audio_s"] / max(stats["synth_cpu_s"], 1e-9), 1),
            "x_realtime": round(stats["audio_s"] / max(cpu, 1e-9), 1)}


def merged_speed(out: Path, new: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """This run's per-source CPU totals added to those of earlier runs into the same folder
    (every item is rendered once, so the sums describe the whole corpus)."""
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    try:
        earlier = json.loads((out / "summary.json").read_text())["speed_totals"]
    except (OSError, KeyError, ValueError):
        earlier = {}
    for part in (earlier, new):
        for source, stats in part.items():
            for key, value in stats.items():
                totals[source][key] += value
    return {source: dict(stats) for source, stats in totals.items()}


def print_summary(summary: dict) -> None:
    def row(name: str, stats: dict, indent: int) -> None:
        print(f"{' ' * indent}{name:<{36 - indent}} {stats['utterances']:>8} utt "
              f"{stats['hours']:>9.2f} h")

    for name in ("train", "dev_native", "dev_so762", "dev"):
        if name not in summary:
            continue
        row(f"{name}.jsonl", summary[name], 0)
        for source, stats in summary[name]["sources"].items():
            row(source, stats, 2)
        if name == "train":
            for voice, stats in summary[name].get("voices", {}).items():
                row(voice, stats, 4)
    print(f"{'speed (audio s / CPU s)':<36} {'synthesis':>10} {'+ augment':>10}")
    for source, stats in summary["speed"].items():
        print(f"  {source:<34} {stats['x_realtime_synth']:>9.1f}x {stats['x_realtime']:>9.1f}x")
    if "all" in summary["speed"]:
        print(f"{REFERENCE_HOURS:.0f} h of this mix on {REFERENCE_CORES} cores: about "
              f"{summary['speed']['all']['hours_for_100h_on_16_cores']:.1f} h")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------- command line


def _pair(text: str) -> tuple[float, float]:
    low, high = (float(x) for x in text.split(","))
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH with 0 < LOW <= HIGH, got {text}")
    return low, high


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0, got {text}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"a share is in [0, 1), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    paths = parser.add_argument_group("inputs and outputs")
    paths.add_argument("--out", type=Path, default=Path("work/corpus"),
                       help="output folder (default: %(default)s)")
    paths.add_argument("--prompts", type=Path, nargs="+", default=list(DEFAULT_PROMPTS),
                       help="sentence files (.txt or .txt.gz), used in this order "
                            "(default: the shared phonetically rich prompts, then all prompts)")
    paths.add_argument("--real", type=Path, default=DEFAULT_REAL,
                       help="real speech manifest to split by speaker (default: %(default)s)")
    paths.add_argument("--no-real", action="store_true",
                       help="synthetic speech only: no real speech in any manifest")
    paths.add_argument("--native-dev", type=Path, default=DEFAULT_NATIVE_DEV,
                       help="real native speech for dev_native.jsonl, never trained on "
                            "(default: %(default)s; skipped with a warning when absent)")
    paths.add_argument("--dev-fraction", type=float, default=0.06,
                       help="share of the real audio held out by speaker, as "
                            "scripts/split_shared_speech.py (default: %(default)s)")
    paths.add_argument("--split-seed", type=int, default=0,
                       help="seed of the speaker split (default: %(default)s)")

    how_much = parser.add_argument_group("how much")
    how_much.add_argument("--first", type=_count, default=0, metavar="N",
                          help="start at training item N: fresh prompts, for fine-tuning a "
                               "model trained on the items before it (default: 0)")
    size = how_much.add_mutually_exclusive_group()
    size.add_argument("--limit", type=int, help="render N training items")
    size.add_argument("--hours", type=float,
                      help="render training items in order until they hold H hours")

    voices = parser.add_argument_group("voices")
    voices.add_argument("--voices", default="",
                        help="comma-separated voice names or engines (see --list-voices) "
                             "(default: every voice available whose licence is free)")
    voices.add_argument("--restricted-voices", action="store_true",
                        help="also use the voices whose licence may not let anyone use the "
                             "trained model (MBROLA us1-us3, Piper joe; see --list-voices)")
    voices.add_argument("--list-voices", action="store_true",
                        help="print every voice with its engine, weight, licence and whether "
                             "it runs here, then exit")
    voices.add_argument("--tts-root", type=Path,
                        help="folder where the TTS .deb files were unpacked (dpkg -x): "
                             "programs from DIR/usr/bin, libraries and data from DIR/usr/...")
    voices.add_argument("--stretch", type=_pair, default=(0.85, 1.25), metavar="LOW,HIGH",
                        help="the engines' duration stretch range, >1 slower "
                             "(default: 0.85,1.25)")
    voices.add_argument("--semitones", type=float, default=3.0,
                        help="the engines' pitch shift range +-N semitones, for voices with a "
                             "pitch control (default: %(default)s)")
    voices.add_argument("--dev-per-voice", type=int, default=150,
                        help="utterances of each held-out voice in dev_native.jsonl "
                             "(default: %(default)s)")

    more = parser.add_argument_group("augmentation")
    more.add_argument("--empty-share", type=_share, default=0.025,
                      help="share of training items with no speech and text \"\" "
                           "(default: %(default)s)")
    more.add_argument("--real-copies", type=_count, default=0, metavar="K",
                      help="K perturbed copies of each real training utterance, as new "
                           "speakers (default: 0)")
    more.add_argument("--no-augment", action="store_true",
                      help="no signal perturbation after synthesis (the level is still set)")

    run = parser.add_argument_group("running")
    run.add_argument("--seed", type=int, default=0,
                     help="seed of every random choice; same seed, same corpus (default: 0)")
    run.add_argument("--jobs", type=int, default=1,
                     help="worker processes, one core each (default: %(default)s)")
    run.add_argument("--max-minutes", type=float, default=0.0,
                     help="start no new training items after this many minutes and write the "
                          "manifests of what is rendered (default: no limit); running again "
                          "renders the rest")
    return parser


def select_voices(spec: str, restricted: bool) -> list[cv.Voice]:
    """VOICES filtered by voice and engine names; restricted voices only when allowed."""
    pool = [v for v in cv.VOICES if restricted or not v.restricted]
    if not spec:
        return pool
    names = {s.strip() for s in spec.split(",") if s.strip()}
    unknown = names - {v.name for v in cv.VOICES} - set(cv.ENGINES)
    if unknown:
        raise SystemExit(f"unknown voice(s) {', '.join(sorted(unknown))}; see --list-voices")
    blocked = sorted(v.name for v in cv.VOICES if v.name in names and v not in pool)
    if blocked:
        raise SystemExit(f"{', '.join(blocked)}: licence may not let anyone use the trained "
                         "model; pass --restricted-voices to use them anyway")
    return [v for v in pool if v.name in names or v.engine in names]


def list_voices(problems: dict[str, str]) -> None:
    """Every voice: engine, role, whether it runs here, licence (and why it is restricted)."""
    for v in cv.VOICES:
        role = "held out" if v.held_out else f"weight {v.weight:.3f}"
        print(f"{v.name:<26} {v.engine:<10} {role:<13} {problems.get(v.name, 'runs here')}")
        print(f"    licence: {v.licence}")
        if v.restricted:
            print(f"    NOT USED unless --restricted-voices: {v.restricted}")


def real_parts(args: argparse.Namespace) -> tuple[list[Entry], list[Entry], list[Entry]]:
    """(real train, real dev, native dev) entries; empty with --no-real."""
    if args.no_real:
        return [], [], []
    real = real_entries(args.real)
    by_utterance = {e.utterance: e for e in real}
    train, dev = split_by_speaker([e.utterance for e in real], args.dev_fraction,
                                  args.split_seed)
    native: list[Entry] = []
    if args.native_dev.is_file():
        native = [Entry(u, "native-dev") for u in read_manifest(args.native_dev)]
    else:
        warn(f"{args.native_dev} not found; dev_native.jsonl has no real native speech")
    return [by_utterance[u] for u in train], [by_utterance[u] for u in dev], native


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    tts_root = args.tts_root.resolve() if args.tts_root else None
    if tts_root is not None:
        cv.relocate(tts_root)
    out = args.out.resolve()
    tools = cv.Tools(tts_root, out / TEMP_DIR)
    try:
        if args.list_voices:
            list_voices(cv.voice_problems(list(cv.VOICES), tools))
            return
        wanted = select_voices(args.voices, args.restricted_voices)
        problems = cv.voice_problems(wanted, tools)
    finally:
        tools.close()
    for name, problem in problems.items():
        warn(f"skipping {name}: {problem}")
    usable = [v for v in wanted if v.name not in problems]
    train_voices = [v for v in usable if not v.held_out and v.weight > 0]
    if not train_voices:
        raise SystemExit("no speech synthesiser is available: install flite, festival, "
                         "espeak-ng, rhvoice or pico, or pass --tts-root (see "
                         "scripts/fetch_tts_debs.sh and --list-voices)")
    try:
        prompts = read_prompts(args.prompts)
        real_train, real_dev, native = real_parts(args)
    except (OSError, UnicodeDecodeError, CorpusError) as error:
        raise SystemExit(f"error: {error}") from None
    if len(prompts) < 2:
        raise SystemExit(f"error: {', '.join(map(str, args.prompts))}: fewer than two prompts")
    settings = Settings(out, tuple(prompts), tuple(train_voices),
                        tuple(v for v in usable if v.held_out), args.seed, args.stretch,
                        args.semitones, args.empty_share, args.dev_per_voice,
                        not args.no_augment, tts_root)
    if args.first >= settings.train_prompts:
        raise SystemExit(f"error: --first {args.first}: there are {settings.train_prompts} "
                         "training prompts")
    print(f"{len(prompts)} prompts ({settings.reserved} reserved for held-out voices); "
          f"training voices: {', '.join(v.name for v in train_voices)}; held out: "
          f"{', '.join(v.name for v in settings.dev_voices) or 'none'}")

    started = time.monotonic()
    train_items, dev_items, progress = render_corpus(settings, args.limit, args.hours,
                                                     args.jobs, args.max_minutes, args.first)
    copies: list[Entry] = []
    if args.real_copies and real_train:
        base = os.path.abspath(args.real.parent)
        plans = [RealCopy.plan(settings, e, k, os.path.relpath(e.utterance.audio, base))
                 for k in range(1, args.real_copies + 1) for e in real_train]
        copies, copied = render_real_copies(settings, plans, args.jobs)
        for status, count in copied.counts.items():
            progress.counts[f"real copies {status}"] += count
    elapsed = time.monotonic() - started
    shutil.rmtree(out / TEMP_DIR, ignore_errors=True)
    synthetic = [synthetic_entry(settings, i, d) for i, d in sorted(train_items.items())]
    held_out = [synthetic_entry(settings, i, progress.durations[i]) for i in sorted(dev_items)]
    manifests = {
        "synthetic": synthetic,
        "train": real_train + copies + synthetic,
        "dev_native": native + held_out + [e for e in real_dev
                                           if e.source != NON_NATIVE_DATASET],
        "dev_so762": [e for e in real_dev if e.source == NON_NATIVE_DATASET],
        "dev": real_dev,
    }
    for name, entries in manifests.items():
        if entries or name in ("synthetic", "train"):
            write_entries(entries, out / f"{name}.jsonl")
        else:
            (out / f"{name}.jsonl").unlink(missing_ok=True)
    totals = merged_speed(out, {k: dict(v) for k, v in progress.speed.items()})
    summary = summarise({name: entries for name, entries in manifests.items() if entries})
    summary["speed"] = speed_table(totals)
    summary["speed_totals"] = totals
    summary["this_run"] = {**progress.counts, "seconds": round(elapsed, 1), "jobs": args.jobs}
    summary["settings"] = {
        "seed": args.seed, "stretch": args.stretch, "semitones": args.semitones,
        "empty_share": args.empty_share, "augment": not args.no_augment,
        "real_copies": args.real_copies,
        "dev_per_voice": args.dev_per_voice, "first": args.first, "limit": args.limit,
        "hours": args.hours,
        "max_minutes": args.max_minutes,
        "prompts": len(prompts), "voices": [v.name for v in train_voices],
        "held_out_voices": [v.name for v in settings.dev_voices],
        "tts_root": str(tts_root) if tts_root else None}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print_summary(summary)
    print(f"this run: {dict(progress.counts)} in {elapsed:.0f} s; manifests and summary.json "
          f"in {out}")


if __name__ == "__main__":
    main()
