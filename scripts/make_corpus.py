"""Build a reproducible training corpus: the real shared speech plus synthetic speech.

    python scripts/make_corpus.py --out work/corpus --jobs 16 --hours 100
    python scripts/make_corpus.py --out work/corpus --limit 2000      # the first 2000 prompts
    python scripts/make_corpus.py --list-voices

Real speech: the shared manifest split by speaker exactly as scripts/split_shared_speech.py
does (--dev-fraction 0.06, --split-seed 0); its train part goes into train.jsonl, its held-out
speakers alone make dev.jsonl.

Synthetic speech: prompt i (the prompt files concatenated in order, duplicates dropped) gets a
voice, speaking rate and pitch drawn from np.random.default_rng([seed, i]), then optional
reverberation (a synthetic room impulse response) and coloured noise drawn from
np.random.default_rng([seed, i, 1]). Voices: flite awb, rms, slt, kal16; festival kal, ked
(festvox-kdlpc16k), slt-hts; espeak-ng English accents with voice variants. The audio goes to
OUT/audio/<voice>/<i>.opus (Ogg/Opus, 16 kHz mono) and the voice is the utterance's speaker,
so a speaker split never divides a voice.

Outputs: OUT/synthetic.jsonl, OUT/train.jsonl (real train + synthetic), OUT/dev.jsonl (real
held-out speakers) and OUT/summary.json (hours and utterances per dataset and per voice).

Reproducible and resumable: rerunning with the same arguments (and the same engines
available) renders only the items whose file is missing and rebuilds identical manifests, so a
killed run is finished by running it again. Files are written atomically. Items that fail to
render are left out with a warning and retried by the next run.

Machine without apt: run scripts/fetch_tts_debs.sh DIR where apt works, unpack the .deb files
there with `for d in DIR/*.deb; do dpkg -x $d $PWD/tts; done` and pass --tts-root $PWD/tts.
flite, espeak-ng and festival all run from such a tree (festival via --libdir/--datadir);
engines whose programs or data are missing are skipped with a warning.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from asr.audio import SAMPLE_RATE, resample
from asr.augment import coloured_noise, mix_at_snr
from asr.corpora import Utterance, read_manifest, split_by_speaker, total_hours, write_manifest
from asr.defaults import SHARED_DATA
from asr.text import normalize_text

DEFAULT_PROMPTS = (SHARED_DATA / "text/prompts_phonrich.txt.gz",
                   SHARED_DATA / "text/prompts.txt.gz")
DEFAULT_REAL = SHARED_DATA / "speech/manifest.jsonl"
AUDIO_SUFFIX = ".opus"
OPUS_COMPRESSION = 0.97  # libsndfile's level; about 16 kbit/s on speech, as the shared audio
TEMP_DIR = ".tmp"  # under --out: the synthesisers' WAV files, removed at the end

FLITE, FESTIVAL, ESPEAK = "flite", "festival", "espeak-ng"
ENGINES = (FLITE, FESTIVAL, ESPEAK)
FESTIVAL_TIMEOUT_S = 120.0  # one utterance; festival is restarted after a timeout
SUBPROCESS_TIMEOUT_S = 60.0
ESPEAK_BASE_WPM = 175  # espeak-ng's default rate; divided by the duration stretch
ESPEAK_BASE_PITCH = 50  # espeak-ng's default -p (0-99); moved 6 steps per semitone
ESPEAK_PITCH_PER_SEMITONE = 6
RT60_DECAY = np.log(1000.0)  # amplitude falls by 60 dB over RT60 seconds
GAIN_DB = (-20.0, -1.0)  # output peak level range


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an engine, its voice argument and how often it is drawn."""

    name: str  # the corpus speaker and audio folder name
    engine: str
    arg: str  # flite -voice, festival voice function, espeak-ng -v
    weight: float
    base_f0: float = 0.0  # mean F0 (Hz) a pitch shift scales; 0: fixed pitch; 1: semitones


def _espeak_voices(total_weight: float) -> list[Voice]:
    accents = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
               "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
    variants = ("m1", "m3", "f2", "f4")
    voices = [f"{accent}+{variant}" for accent in accents for variant in variants]
    return [Voice(f"espeak-{v}", ESPEAK, v, total_weight / len(voices), base_f0=1.0)
            for v in voices]


# Weights follow how speech-like each engine is (pocketsphinx WER in shared/notes/machines.md).
VOICES: tuple[Voice, ...] = (
    Voice("flite-rms", FLITE, "rms", 0.15),
    Voice("flite-slt", FLITE, "slt", 0.10),
    Voice("flite-awb", FLITE, "awb", 0.10),
    Voice("flite-kal16", FLITE, "kal16", 0.12, base_f0=100.0),
    Voice("festival-kal", FESTIVAL, "voice_kal_diphone", 0.12, base_f0=105.0),
    Voice("festival-ked", FESTIVAL, "voice_ked_diphone", 0.12, base_f0=105.0),
    Voice("festival-slt-hts", FESTIVAL, "voice_cmu_us_slt_arctic_hts", 0.15, base_f0=1.0),
    *_espeak_voices(0.14),
)
FESTIVAL_VOICE_DIRS = {"voice_kal_diphone": "english/kal_diphone",
                       "voice_ked_diphone": "english/ked_diphone",
                       "voice_cmu_us_slt_arctic_hts": "us/cmu_us_slt_arctic_hts"}


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to render any item; the same settings give the same corpus."""

    out: Path
    prompts: tuple[str, ...]
    voices: tuple[Voice, ...]
    seed: int
    stretch: tuple[float, float]  # duration stretch range (>1 is slower)
    semitones: float  # pitch shift drawn from [-semitones, +semitones]
    reverb_prob: float
    rt60: tuple[float, float]
    noise_prob: float
    snr_db: tuple[float, ...]
    tts_root: Path | None = None


@dataclass(frozen=True)
class Item:
    """The deterministic recipe of one synthetic utterance."""

    index: int
    text: str
    voice: Voice
    stretch: float
    semitones: float
    rt60: float | None  # None: no reverberation
    snr_db: float | None  # None: no noise
    gain_db: float
    path: Path = field(compare=False)


class RenderError(Exception):
    """A synthesiser failed on one item."""


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


def plan_item(settings: Settings, index: int) -> Item:
    """Voice, rate, pitch and augmentation of prompt `index`, from seeded generators only."""
    rng = np.random.default_rng([settings.seed, index])
    weights = np.array([v.weight for v in settings.voices])
    voice = settings.voices[rng.choice(len(settings.voices), p=weights / weights.sum())]
    stretch = round(float(rng.uniform(*settings.stretch)), 3)
    semitones = round(float(rng.uniform(-settings.semitones, settings.semitones)), 2)
    if not voice.base_f0:
        semitones = 0.0
    aug = np.random.default_rng([settings.seed, index, 1])
    rt60 = (round(float(aug.uniform(*settings.rt60)), 3)
            if aug.random() < settings.reverb_prob else None)
    snr = (float(aug.choice(settings.snr_db))
           if settings.snr_db and aug.random() < settings.noise_prob else None)
    gain_db = round(float(aug.uniform(*GAIN_DB)), 2)
    path = settings.out / "audio" / voice.name / f"{index:07d}{AUDIO_SUFFIX}"
    return Item(index, settings.prompts[index], voice, stretch, semitones, rt60, snr, gain_db,
                path)


# ---------------------------------------------------------------------------- engines


def tool_env(tts_root: Path | None) -> dict[str, str]:
    """Environment for the synthesisers: libraries and espeak-ng data from an unpacked tree."""
    env = dict(os.environ)
    if tts_root is None:
        return env
    lib_dirs = sorted(str(p) for p in (tts_root / "usr/lib").glob("*-linux-gnu"))
    lib_dirs += [f"{d}/pulseaudio" for d in lib_dirs]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_dirs + [env.get("LD_LIBRARY_PATH", "")])
    for lib_dir in lib_dirs:
        if Path(lib_dir, "espeak-ng-data").is_dir():
            env["ESPEAK_DATA_PATH"] = lib_dir
    return env


def program(name: str, tts_root: Path | None) -> str | None:
    """Path of a synthesiser program in the unpacked tree (or on PATH), or None."""
    if tts_root is not None:
        path = tts_root / "usr/bin" / name
        return str(path) if os.access(path, os.X_OK) else None
    return shutil.which(name)


def festival_libdir(tts_root: Path | None) -> Path:
    return (tts_root or Path("/")) / "usr/share/festival"


def festival_command(tts_root: Path | None) -> list[str]:
    binary = program("festival", tts_root)
    assert binary is not None
    if tts_root is None:
        return [binary, "--pipe"]
    libdir = str(festival_libdir(tts_root))
    return [binary, "--libdir", libdir, "--datadir", libdir, "--pipe"]


def available_voices(voices: Sequence[Voice], tts_root: Path | None) -> list[Voice]:
    """The voices whose engine runs here; warns about each engine or voice left out."""
    env = tool_env(tts_root)
    usable = []
    for engine in ENGINES:
        wanted = [v for v in voices if v.engine == engine]
        if not wanted:
            continue
        binary = program(engine, tts_root)
        problem = None if binary else f"{engine} not found"
        if binary and engine == FLITE:
            result = subprocess.run([binary, "-lv"], capture_output=True, text=True, env=env,
                                    check=False)
            known = set(result.stdout.replace(":", " ").split())
            missing = [v for v in wanted if v.arg not in known]
            for v in missing:
                warn(f"flite has no voice {v.arg}; skipping {v.name}")
            wanted = [v for v in wanted if v not in missing]
        elif binary and engine == ESPEAK:
            result = subprocess.run([binary, "--voices=en"], capture_output=True, text=True,
                                    env=env, check=False)
            if result.returncode != 0:
                problem = f"espeak-ng does not run: {result.stderr.strip()[:200]}"
        elif binary and engine == FESTIVAL:
            voices_dir = festival_libdir(tts_root) / "voices"
            missing = [v for v in wanted
                       if not (voices_dir / FESTIVAL_VOICE_DIRS[v.arg]).is_dir()]
            for v in missing:
                warn(f"festival voice {v.arg} not installed; skipping {v.name}")
            wanted = [v for v in wanted if v not in missing]
        if problem:
            warn(f"{problem}; skipping its {len(wanted)} voice(s)")
            continue
        usable += wanted
    return usable


class FestivalServer:
    """One long-lived `festival --pipe` process; each utterance ends with a marker on stderr."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.command, self.env = command, env
        self.process: subprocess.Popen | None = None
        self.count = 0

    def _start(self) -> subprocess.Popen:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                            env=self.env)
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def run(self, scheme: str) -> None:
        """Evaluate Scheme expressions and wait until festival has finished them."""
        process = self._start()
        self.count += 1
        marker = f"DONE-{self.count}"
        assert process.stdin is not None and process.stderr is not None
        try:
            process.stdin.write(f'{scheme}\n(format stderr "{marker}\\n")\n'.encode())
            process.stdin.flush()
        except BrokenPipeError:
            self.stop()
            raise RenderError("festival exited") from None
        output = b""
        deadline = time.monotonic() + FESTIVAL_TIMEOUT_S
        fd = process.stderr.fileno()
        while f"{marker}\n".encode() not in output:
            remaining = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(remaining, 0))[0] if remaining > 0 else []
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                self.stop()
                why = "timed out" if not ready else "exited"
                raise RenderError(f"festival {why}: {output.decode(errors='replace')[-300:]}")
            output += chunk


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Synthesiser:
    """Renders items to float32 samples at SAMPLE_RATE with whichever engine an item names."""

    def __init__(self, tts_root: Path | None, temp_root: Path) -> None:
        self.tts_root = tts_root
        self.env = tool_env(tts_root)
        self.festival: FestivalServer | None = None
        temp_root.mkdir(parents=True, exist_ok=True)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="worker-", dir=temp_root))

    def close(self) -> None:
        if self.festival is not None:
            self.festival.stop()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _call(self, command: list[str]) -> None:
        try:
            result = subprocess.run(command, capture_output=True, text=True, env=self.env,
                                    timeout=SUBPROCESS_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise RenderError(f"{command[0]} timed out") from None
        if result.returncode != 0:
            raise RenderError(f"{command[0]} failed ({result.returncode}): "
                              f"{result.stderr.strip()[:300]}")

    def _flite(self, item: Item, wav: Path) -> None:
        command = [program(FLITE, self.tts_root) or FLITE, "-voice", item.voice.arg,
                   "--setf", f"duration_stretch={item.stretch}"]
        if item.voice.base_f0:
            f0 = item.voice.base_f0 * 2 ** (item.semitones / 12)
            command += ["--setf", f"int_f0_target_mean={f0:.1f}"]
        self._call(command + ["-t", item.text, "-o", str(wav)])

    def _espeak(self, item: Item, wav: Path) -> None:
        rate = round(ESPEAK_BASE_WPM / item.stretch)
        pitch = int(np.clip(ESPEAK_BASE_PITCH + ESPEAK_PITCH_PER_SEMITONE * item.semitones,
                            0, 99))
        self._call([program(ESPEAK, self.tts_root) or ESPEAK, "-v", item.voice.arg,
                    "-s", str(rate), "-p", str(pitch), "-w", str(wav), item.text])

    def _festival(self, item: Item, wav: Path) -> None:
        if self.festival is None:
            self.festival = FestivalServer(festival_command(self.tts_root), self.env)
        voice = item.voice
        lines = [f"({voice.arg})"]
        if voice.arg.endswith("_hts"):  # the HTS engine takes a speed and a half-tone shift
            lines += ["(Parameter.set 'Duration_Stretch 1.0)",
                      f"(set! hts_engine_params (append {voice.arg[6:]}::hts_engine_params "
                      f"(list (list \"-r\" {1 / item.stretch:.4f}) "
                      f"(list \"-fm\" {item.semitones:.2f}))))"]
        else:
            f0 = voice.base_f0 * 2 ** (item.semitones / 12)
            lines += [f"(Parameter.set 'Duration_Stretch {item.stretch})",
                      f"(set! int_lr_params '((target_f0_mean {f0:.1f}) "
                      f"(target_f0_std {f0 * 0.14:.1f}) (model_f0_mean 170) (model_f0_std 34)))"]
        lines.append(f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(item.text)})) "
                     f"{_scheme_string(str(wav))} 'riff)")
        self.festival.run("\n".join(lines))

    def render(self, item: Item) -> np.ndarray:
        """Synthesise one item's text as float32 mono samples at SAMPLE_RATE."""
        wav = self.temp_dir / f"{item.index}.wav"
        wav.unlink(missing_ok=True)
        render = {FLITE: self._flite, ESPEAK: self._espeak, FESTIVAL: self._festival}
        render[item.voice.engine](item, wav)
        if not wav.is_file():
            raise RenderError(f"{item.voice.engine} wrote no audio")
        try:
            samples, rate = sf.read(wav, dtype="float32", always_2d=True)
        finally:
            wav.unlink(missing_ok=True)
        samples = resample(samples.mean(axis=1), rate, SAMPLE_RATE)
        if samples.size == 0 or not np.any(samples):
            raise RenderError(f"{item.voice.engine} wrote silence")
        return samples


# ---------------------------------------------------------------------------- augmentation


def room_impulse_response(rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Exponentially decaying noise lasting `rt60` seconds after a unit direct path."""
    t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
    response = rng.standard_normal(t.size) * np.exp(-RT60_DECAY * t / rt60)
    response *= 0.3 / (np.sqrt(np.sum(response**2)) + 1e-9)  # reverberant energy < direct
    response[0] = 1.0
    return response


def reverberate(audio: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room response (FFT), keeping the length and the RMS level."""
    response = room_impulse_response(rt60, rng)
    size = audio.size + response.size - 1
    n = 1 << (size - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(audio, n) * np.fft.rfft(response, n), n)[:audio.size]
    return (wet * np.sqrt(np.mean(audio**2) / (np.mean(wet**2) + 1e-12))).astype(np.float32)


def augment(audio: np.ndarray, item: Item, seed: int) -> np.ndarray:
    """Reverberation, noise and output level as the item's recipe says."""
    rng = np.random.default_rng([seed, item.index, 2])
    if item.rt60 is not None:
        audio = reverberate(audio, item.rt60, rng)
    if item.snr_db is not None:
        audio = mix_at_snr(audio, coloured_noise(audio.size, rng), item.snr_db)
    peak = float(np.abs(audio).max()) + 1e-9
    return (audio * (10 ** (item.gain_db / 20) / peak)).astype(np.float32)


# ---------------------------------------------------------------------------- workers


def write_audio(path: Path, audio: np.ndarray) -> None:
    """Write Ogg/Opus at SAMPLE_RATE atomically (a temp file in the folder, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(temp, audio, SAMPLE_RATE, format="OGG", subtype="OPUS",
                 compression_level=OPUS_COMPRESSION)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


_worker: dict = {}


def init_worker(settings: Settings) -> None:
    """Pool initializer: one synthesiser (and festival process) per worker."""
    _worker["settings"] = settings
    _worker["synth"] = Synthesiser(settings.tts_root, settings.out / TEMP_DIR)


def process_item(index: int) -> tuple[int, float | None, str]:
    """Render prompt `index` unless its file exists; returns (index, duration, status)."""
    settings: Settings = _worker["settings"]
    item = plan_item(settings, index)
    status = "reused"
    if not item.path.is_file():
        try:
            audio = _worker["synth"].render(item)
            write_audio(item.path, augment(audio, item, settings.seed))
        except Exception as error:  # noqa: BLE001 - one bad item must not stop the run
            return index, None, f"failed: {item.voice.name}: {error}"
        status = "rendered"
    return index, sf.info(str(item.path)).duration, status


@contextmanager
def item_runner(settings: Settings, jobs: int) -> Iterator[Callable[[Sequence[int]], Iterator]]:
    """A function mapping process_item over indices, in `jobs` worker processes when > 1."""
    if jobs <= 1:
        init_worker(settings)
        try:
            yield lambda indices: map(process_item, indices)
        finally:
            _worker["synth"].close()
        return
    with Pool(jobs, initializer=init_worker, initargs=(settings,)) as pool:
        yield lambda indices: pool.imap_unordered(process_item, indices, chunksize=4)


def render_corpus(settings: Settings, limit: int | None, hours: float | None,
                  jobs: int) -> tuple[dict[int, float], dict[str, int]]:
    """Render (or reuse) items: the first `limit` prompts, or the shortest prefix of prompts
    holding `hours` of audio. Returns {index: duration} of the corpus and status counts."""
    durations: dict[int, float] = {}
    counts: dict[str, int] = defaultdict(int)
    total = len(settings.prompts)

    def consume(results: Iterable[tuple], bar: tqdm, by_seconds: bool) -> None:
        for index, duration, status in results:
            counts[status.split(":")[0]] += 1
            if duration is None:
                bar.write(f"warning: prompt {index} {status}")
            else:
                durations[index] = duration
            bar.update((duration or 0.0) if by_seconds else 1)

    with item_runner(settings, jobs) as run:
        if hours is None:
            count = total if limit is None else min(limit, total)
            with tqdm(total=count, unit="utt", desc="synthetic") as bar:
                consume(run(range(count)), bar, False)
            return durations, dict(counts)
        target, start, batch = hours * 3600, 0, max(64, 32 * jobs)
        with tqdm(total=round(target), unit="s", desc="synthetic audio") as bar:
            while start < total and sum(durations.values()) < target:
                stop = min(start + batch, total)
                consume(run(range(start, stop)), bar, True)
                start = stop
    kept, covered = {}, 0.0
    for index in sorted(durations):  # the shortest prefix reaching the target
        if covered >= target:
            break
        kept[index] = durations[index]
        covered += durations[index]
    return kept, dict(counts)


# ---------------------------------------------------------------------------- manifests


def read_datasets(manifest: Path) -> dict[Path, str]:
    """Audio path -> `dataset` field of a shared-speech manifest (read_manifest drops it)."""
    base = Path(os.path.abspath(manifest.parent))
    datasets = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            datasets[Path(os.path.abspath(base / entry["audio"]))] = entry.get("dataset", "")
    return datasets


def _stats(utterances: Sequence[Utterance]) -> dict[str, float]:
    return {"utterances": len(utterances), "hours": round(total_hours(utterances), 6)}


def _grouped(utterances: Iterable[Utterance], key) -> dict[str, dict[str, float]]:
    groups: dict[str, list[Utterance]] = defaultdict(list)
    for utterance in utterances:
        groups[key(utterance)].append(utterance)
    return {name: _stats(group) for name, group in sorted(groups.items())}


def summarise(real_train: list[Utterance], real_dev: list[Utterance],
              synthetic: list[Utterance], datasets: dict[Path, str],
              engines: dict[str, str]) -> dict:
    """Hours and utterance counts: real speech by dataset, synthetic by engine and voice."""
    def dataset(u: Utterance) -> str:
        return datasets.get(u.audio, "") or "unknown"

    by_engine: dict[str, dict] = {}
    for engine in sorted(set(engines.values())):
        voices = [u for u in synthetic if engines[u.speaker] == engine]
        if voices:
            by_engine[engine] = {**_stats(voices),
                                 "voices": _grouped(voices, lambda u: u.speaker)}
    return {
        "train": _stats(real_train + synthetic),
        "dev": _stats(real_dev),
        "real_train": {**_stats(real_train), "datasets": _grouped(real_train, dataset)},
        "real_dev": {**_stats(real_dev), "datasets": _grouped(real_dev, dataset)},
        "synthetic": {**_stats(synthetic), "engines": by_engine},
    }


def print_summary(summary: dict) -> None:
    def row(name: str, stats: dict, indent: int) -> None:
        print(f"{' ' * indent}{name:<{34 - indent}} {stats['utterances']:>8} utt "
              f"{stats['hours']:>9.2f} h")

    for part in ("real_train", "real_dev"):
        row(part, summary[part], 0)
        for name, stats in summary[part]["datasets"].items():
            row(name, stats, 2)
    row("synthetic", summary["synthetic"], 0)
    for engine, stats in summary["synthetic"]["engines"].items():
        row(engine, stats, 2)
        for voice, voice_stats in stats["voices"].items():
            row(voice, voice_stats, 4)
    row("train.jsonl (real + synthetic)", summary["train"], 0)
    row("dev.jsonl (real held-out speakers)", summary["dev"], 0)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------- command line


def _pair(text: str) -> tuple[float, float]:
    low, high = (float(x) for x in text.split(","))
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH with 0 < LOW <= HIGH, got {text}")
    return low, high


def _probability(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a probability is in [0, 1], got {text}")
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
                       help="synthetic speech only: train.jsonl = synthetic, no dev.jsonl")
    paths.add_argument("--dev-fraction", type=float, default=0.06,
                       help="share of the real audio held out by speaker, as "
                            "scripts/split_shared_speech.py (default: %(default)s)")
    paths.add_argument("--split-seed", type=int, default=0,
                       help="seed of the speaker split (default: %(default)s)")

    size = parser.add_argument_group("how much").add_mutually_exclusive_group()
    size.add_argument("--limit", type=int, help="render the first N prompts (default: all)")
    size.add_argument("--hours", type=float,
                      help="render prompts in order until the synthetic audio reaches H hours")

    voices = parser.add_argument_group("voices")
    voices.add_argument("--voices", default="",
                        help="comma-separated voice names or engines (flite, festival, "
                             "espeak-ng) to use (default: every voice available)")
    voices.add_argument("--list-voices", action="store_true",
                        help="print the voices, their weights and whether they run, then exit")
    voices.add_argument("--tts-root", type=Path,
                        help="folder where the TTS .deb files were unpacked (dpkg -x): "
                             "programs from DIR/usr/bin, libraries and data from DIR/usr/...")
    voices.add_argument("--stretch", type=_pair, default=(0.8, 1.3), metavar="LOW,HIGH",
                        help="duration stretch range, >1 slower (default: 0.8,1.3)")
    voices.add_argument("--semitones", type=float, default=4.0,
                        help="pitch shift range +-N semitones, for voices that allow it "
                             "(flite kal16, festival, espeak-ng) (default: %(default)s)")

    aug = parser.add_argument_group("augmentation (after synthesis)")
    aug.add_argument("--reverb-prob", type=_probability, default=0.3,
                     help="chance of reverberation (default: %(default)s)")
    aug.add_argument("--rt60", type=_pair, default=(0.15, 0.8), metavar="LOW,HIGH",
                     help="reverberation time range in seconds (default: 0.15,0.8)")
    aug.add_argument("--noise-prob", type=_probability, default=0.4,
                     help="chance of additive white/pink/brown noise (default: %(default)s)")
    aug.add_argument("--snr-db", type=float, nargs="+", default=[5.0, 10.0, 15.0, 20.0, 30.0],
                     help="signal-to-noise ratios drawn from (default: 5 10 15 20 30)")

    run = parser.add_argument_group("running")
    run.add_argument("--seed", type=int, default=0,
                     help="seed of every random choice; same seed, same corpus (default: 0)")
    run.add_argument("--jobs", type=int, default=1,
                     help="worker processes, one core each (default: %(default)s)")
    return parser


def select_voices(spec: str) -> list[Voice]:
    """VOICES filtered by a comma-separated list of voice names and engine names."""
    if not spec:
        return list(VOICES)
    names = {s.strip() for s in spec.split(",") if s.strip()}
    unknown = names - {v.name for v in VOICES} - set(ENGINES)
    if unknown:
        raise SystemExit(f"unknown voice(s) {', '.join(sorted(unknown))}; see --list-voices")
    return [v for v in VOICES if v.name in names or v.engine in names]


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    tts_root = args.tts_root.resolve() if args.tts_root else None
    wanted = select_voices(args.voices)
    voices = available_voices(wanted, tts_root)
    if args.list_voices:
        for v in wanted:
            print(f"{v.name:<28} {v.engine:<10} weight {v.weight:.4f} "
                  f"{'ok' if v in voices else 'NOT AVAILABLE'}")
        return
    if not voices:
        raise SystemExit("no speech synthesiser is available: install flite, festival or "
                         "espeak-ng, or pass --tts-root (see scripts/fetch_tts_debs.sh)")
    out = args.out.resolve()
    prompts = read_prompts(args.prompts)
    settings = Settings(out, tuple(prompts), tuple(voices), args.seed, args.stretch,
                        args.semitones, args.reverb_prob, args.rt60, args.noise_prob,
                        tuple(args.snr_db), tts_root)
    print(f"{len(prompts)} prompts; {len(voices)} voices: "
          f"{', '.join(sorted({v.engine for v in voices}))}")

    started = time.monotonic()
    durations, counts = render_corpus(settings, args.limit, args.hours, args.jobs)
    elapsed = time.monotonic() - started
    shutil.rmtree(out / TEMP_DIR, ignore_errors=True)
    synthetic = []
    for index in sorted(durations):
        item = plan_item(settings, index)
        synthetic.append(Utterance(item.path, item.text, durations[index], item.voice.name))

    real_train: list[Utterance] = []
    real_dev: list[Utterance] = []
    datasets: dict[Path, str] = {}
    if not args.no_real:
        real = read_manifest(args.real)
        real_train, real_dev = split_by_speaker(real, args.dev_fraction, args.split_seed)
        datasets = read_datasets(args.real)
    write_manifest(synthetic, out / "synthetic.jsonl")
    write_manifest(real_train + synthetic, out / "train.jsonl")
    if not args.no_real:
        write_manifest(real_dev, out / "dev.jsonl")

    summary = summarise(real_train, real_dev, synthetic, datasets,
                        {v.name: v.engine for v in VOICES})
    summary["this_run"] = {**counts, "seconds": round(elapsed, 1), "jobs": args.jobs}
    summary["settings"] = {key: value for key, value in asdict(settings).items()
                           if key not in ("prompts", "voices", "out")}
    summary["settings"].update(voices=[v.name for v in voices], prompts=len(prompts),
                               limit=args.limit, hours=args.hours)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print_summary(summary)
    written = "train, synthetic" + ("" if args.no_real else ", dev")
    print(f"this run: {dict(counts)} in {elapsed:.0f} s; wrote {written}.jsonl and "
          f"summary.json to {out}")


if __name__ == "__main__":
    main()
