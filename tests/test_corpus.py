"""scripts/make_corpus.py and its modules: real synthesis per engine, manifests, held-out voices,
no-speech items, resumability, reproducibility, unpacked-tree relocation and every
augmentation function."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from common import load_script

from asr.audio import SAMPLE_RATE, load_audio
from asr.corpora import read_manifest, split_by_speaker

mc = load_script("make_corpus")
aug, cv = mc.aug, mc.cv  # scripts/corpus_augment.py, scripts/corpus_voices.py
PROMPTS = ["The cat sat on the mat.", "Hello world, this is test number 42.",
           "\u201cQuoted\u201d text -- with punctuation!", "A small sentence here.",
           "Where were you yesterday evening?", "Seven green apples fell off the tree.",
           "Please call Stella and ask her to bring these things.", "It is raining again.",
           "The quick brown fox jumps over the lazy dog.", "She sells sea shells.",
           "We will meet at noon near the old bridge.", "My phone number is five five five.",
           "Open the window, it is hot in here.", "Turn left at the second light."]


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory):
    tools = cv.Tools(None, tmp_path_factory.mktemp("tools"))
    yield tools
    tools.close()


@pytest.fixture(scope="module")
def problems(tools) -> dict[str, str]:
    return cv.voice_problems(list(cv.VOICES), tools)


def _tone(hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.fft.rfftfreq(audio.size, 1 / SAMPLE_RATE)[np.argmax(spectrum)])


def _band_energy(audio: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / SAMPLE_RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum() / spectrum.sum())


def _speechlike(seconds: float = 2.0) -> np.ndarray:
    """Harmonics of a gliding 120-200 Hz voice, amplitude-modulated into syllables."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 120 + 80 * t / seconds
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 20))
    return (0.3 * voice * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


# ---------------------------------------------------------------------------- engines


@pytest.mark.parametrize("engine", sorted(cv.ENGINES))
def test_each_engine_speaks_from_its_adapter(engine: str, tools, problems, tmp_path) -> None:
    voices = [v for v in cv.VOICES if v.engine == engine and v.name not in problems]
    if not voices:
        reasons = {problems[v.name] for v in cv.VOICES if v.engine == engine}
        pytest.skip(f"{engine} not available here: {'; '.join(sorted(reasons))}")
    wav = tmp_path / "out.wav"
    cv.render(tools, voices[0], "the cat sat on the mat", cv.Prosody(1.1, 1.0), wav)
    audio = load_audio(wav)
    assert 0.5 < audio.size / SAMPLE_RATE < 5
    assert np.sqrt(np.mean(audio**2)) > 0.01


def test_missing_engines_are_reported_and_none_is_an_error(tmp_path: Path) -> None:
    empty = cv.Tools(tmp_path, tmp_path / "tmp")
    try:
        problems = cv.voice_problems(list(cv.VOICES), empty)
    finally:
        empty.close()
    # an empty unpacked tree has no programs (Piper is a Python package, found elsewhere)
    assert set(problems) >= {v.name for v in cv.VOICES if cv.ENGINES[v.engine].program}
    assert "RHVoice-test not found" in problems["rhvoice-alan"]
    with pytest.raises(SystemExit, match="no speech synthesiser"):
        mc.main(["--out", str(tmp_path / "out"), "--tts-root", str(tmp_path)])


def test_bad_inputs_give_one_line_errors(tmp_path: Path, problems) -> None:
    if "flite-rms" in problems:
        pytest.skip(f"needs flite: {problems['flite-rms']}")
    base = ["--out", str(tmp_path / "out"), "--voices", "flite-rms", "--no-real"]
    with pytest.raises(SystemExit, match="error: .*No such file"):
        mc.main([*base, "--prompts", str(tmp_path / "missing.txt")])
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(SystemExit, match="error: "):
        mc.main([*base, "--prompts", str(tmp_path / "bad.txt")])
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_restricted_and_unknown_voices_are_refused() -> None:
    assert not any(v.restricted for v in mc.select_voices("", restricted=False))
    with pytest.raises(SystemExit, match="--restricted-voices"):
        mc.select_voices("mbrola-us2", restricted=False)
    assert [v.name for v in mc.select_voices("mbrola-us2", restricted=True)] == ["mbrola-us2"]
    with pytest.raises(SystemExit, match="unknown voice"):
        mc.select_voices("nobody", restricted=False)
    held_out = [v for v in cv.VOICES if v.held_out]
    assert len({v.engine for v in held_out}) == len(held_out) >= 2
    assert all(v.weight == 0 and not v.restricted for v in held_out)


def test_relocated_pico_runs_from_an_unpacked_tree(tmp_path: Path) -> None:
    """A copy of pico2wave, its library and data, as `dpkg -x` leaves them, with the
    compiled-in /usr/share/pico/lang/ rewritten."""
    program = shutil.which("pico2wave")
    libraries = sorted(Path("/usr/lib/x86_64-linux-gnu").glob("libttspico.so*"))
    if not program or not libraries or not Path("/usr/share/pico/lang").is_dir():
        pytest.skip("SVOX Pico (libttspico-utils) not installed")
    root = tmp_path / "tts"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    shutil.copy(program, root / "usr/bin")
    for library in libraries:
        shutil.copy(library, root / "usr/lib/x86_64-linux-gnu", follow_symlinks=True)
    shutil.copytree("/usr/share/pico/lang", root / "usr/share/pico/lang")
    size = (root / "usr/bin/pico2wave").stat().st_size
    cv.relocate(root)
    cv.relocate(root)  # repeating is harmless
    patched = (root / "usr/bin/pico2wave").read_bytes()
    assert len(patched) == size and b"/usr/share/pico/lang/\0" not in patched
    assert b"./" + b"/" * 14 + b"pico/\0" in patched
    tools = cv.Tools(root, tmp_path / "tmp")
    try:
        assert "en-GB" in cv.ENGINES["pico"].installed(tools)
        wav = tmp_path / "out.wav"
        cv.render(tools, next(v for v in cv.VOICES if v.name == "pico-en-GB"),
                  "hello there", cv.Prosody(1.0, 0.0), wav)
    finally:
        tools.close()
    assert load_audio(wav).size > SAMPLE_RATE // 2


def test_relocate_replaces_a_mbrola_link_left_dangling_by_a_moved_tree(tmp_path: Path) -> None:
    """A tree unpacked, relocated, then packed and unpacked elsewhere (the GPU machine)."""
    root = tmp_path / "tts"
    voice = root / "usr/share/mbrola/en1/en1"
    voice.parent.mkdir(parents=True)
    voice.write_bytes(b"voice")
    link = root / "usr/lib/x86_64-linux-gnu/espeak-ng-data/mbrola/en1"
    link.parent.mkdir(parents=True)
    link.symlink_to(tmp_path / "elsewhere/usr/share/mbrola/en1/en1")
    cv.relocate(root)
    cv.relocate(root)
    assert link.read_bytes() == b"voice"


# ---------------------------------------------------------------------------- whole runs


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """Prompts, a real-speech manifest of four speakers in three datasets, a native dev set."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    real = tmp_path / "real"
    (real / "audio").mkdir(parents=True)
    lines = []
    speakers = [("ann", "speechocean762", 1.0), ("bob", "speechocean762", 2.0),
                ("cat", "cmu-an4", 1.5), ("dan", "cathy-arctic", 3.0)]
    for i, (speaker, dataset, seconds) in enumerate(speakers):
        sf.write(real / "audio" / f"{i}.wav", np.zeros(int(seconds * SAMPLE_RATE)), SAMPLE_RATE)
        lines.append(json.dumps({"audio": f"audio/{i}.wav", "text": "yes", "duration": seconds,
                                 "speaker": speaker, "dataset": dataset}))
    (real / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    native = real / "native_dev.jsonl"
    native.write_text(json.dumps({"audio": "audio/0.wav", "text": "native", "duration": 1.0,
                                  "speaker": "p239"}) + "\n")
    return {"prompts": prompts, "real": real / "manifest.jsonl", "native": native}


FAST_VOICES = "flite-rms,flite-kal16,pico-en-US,pico-en-GB"  # one held out (pico-en-GB)


def _run(out: Path, inputs: dict[str, Path], *extra: str) -> dict:
    mc.main(["--out", str(out), "--prompts", str(inputs["prompts"]), "--real",
             str(inputs["real"]), "--native-dev", str(inputs["native"]), "--dev-fraction",
             "0.5", "--voices", FAST_VOICES, "--limit", "6", "--dev-per-voice", "2",
             "--empty-share", "0.25", *extra])
    return json.loads((out / "summary.json").read_text())


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def corpus(tmp_path: Path, inputs, problems) -> tuple[Path, dict]:
    missing = [n for n in FAST_VOICES.split(",") if n in problems]
    if missing:
        pytest.skip(f"needs flite and pico: {'; '.join(problems[n] for n in missing)}")
    out = tmp_path / "corpus"
    return out, _run(out, inputs)


def test_corpus_manifests_held_out_voices_and_empty_items(corpus, inputs) -> None:
    out, summary = corpus
    synthetic = _lines(out / "synthetic.jsonl")
    train, native = _lines(out / "train.jsonl"), _lines(out / "dev_native.jsonl")
    assert len(synthetic) == 6 and summary["this_run"]["rendered"] == 8  # + 2 held out
    for entry in synthetic + [e for e in native if e["source"] == "pico"]:
        path = out / entry["audio"]
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.format) == (SAMPLE_RATE, 1, "FLAC")
        assert abs(info.duration - entry["duration"]) < 1e-3
        audio = load_audio(path)
        rms_db = 20 * np.log10(np.sqrt(np.mean(audio**2)) + 1e-12)
        if entry["text"]:
            assert entry["speaker"] == entry["voice"] == path.parent.name
            assert np.abs(audio).max() > 0.02
        else:  # no speech: silence, room tone, noise or hum, never louder than -15 dBFS
            assert entry["speaker"] == entry["source"] == mc.NO_SPEECH
            assert entry["kind"] in aug.EMPTY_KINDS and rms_db < -15
    assert any(not e["text"] for e in synthetic) and any(e["text"] for e in synthetic)

    # held out: a whole voice, on prompts no training item reads
    held = [e for e in native if e["source"] == "pico"]
    assert {e["speaker"] for e in held} == {"pico-en-GB"} and len(held) == 2
    assert "pico-en-GB" not in {e["speaker"] for e in train}
    assert not {e["text"] for e in held} & {e["text"] for e in train}

    # real speech: the speaker split as split_by_speaker; speechocean762 apart from native
    real_train, real_dev = split_by_speaker(read_manifest(inputs["real"]), 0.5, 0)
    assert [e["speaker"] for e in train[:len(real_train)]] == [u.speaker for u in real_train]
    assert train[len(real_train):] == synthetic
    dev = _lines(out / "dev.jsonl")
    assert [e["speaker"] for e in dev] == [u.speaker for u in real_dev]
    so762 = [e for e in dev if e["source"] == "speechocean762"]
    assert (out / "dev_so762.jsonl").is_file() == bool(so762)
    assert [e for e in native if e["source"] not in ("pico", "native-dev")] == [
        e for e in dev if e["source"] != "speechocean762"]
    assert native[0]["speaker"] == "p239" and Path(native[0]["audio"]).is_absolute()

    assert summary["train"]["hours"] == pytest.approx(sum(e["duration"] for e in train) / 3600,
                                                      abs=1e-3)
    assert set(summary["train"]["voices"]) <= {"flite-rms", "flite-kal16", "pico-en-US",
                                               mc.NO_SPEECH}
    assert {"flite", "pico"} & set(summary["speed"]) and summary["speed"]["all"]["x_realtime"] > 0


def test_corpus_is_resumable_and_reproducible(corpus, inputs, tmp_path: Path) -> None:
    out, _ = corpus
    names = ("synthetic.jsonl", "train.jsonl", "dev.jsonl", "dev_native.jsonl")
    manifests = {name: (out / name).read_bytes() for name in names}
    synthetic = _lines(out / "synthetic.jsonl")
    removed = [out / synthetic[i]["audio"] for i in (1, 4)]
    for path in removed:
        path.unlink()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.flac")}
    again = _run(out, inputs)
    assert again["this_run"]["rendered"] == 2 and again["this_run"]["reused"] == 6
    assert {name: (out / name).read_bytes() for name in names} == manifests
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert not (out / mc.TEMP_DIR).exists()

    fresh = tmp_path / "fresh"  # same arguments, new folder: the same corpus, sample for sample
    _run(fresh, inputs)
    assert (fresh / "synthetic.jsonl").read_bytes() == manifests["synthetic.jsonl"]
    for entry in synthetic[:4]:
        assert np.array_equal(sf.read(out / entry["audio"])[0], sf.read(fresh / entry["audio"])[0])


def test_max_minutes_writes_what_is_rendered_and_a_rerun_completes(corpus, inputs, capsys,
                                                                   tmp_path: Path) -> None:
    out, _ = corpus
    timed = tmp_path / "timed"
    summary = _run(timed, inputs, "--max-minutes", "1e-9")  # no training item starts in time
    assert "--max-minutes 1e-09 reached at training item 0" in capsys.readouterr().err
    assert summary["this_run"]["rendered"] == 2  # the held-out voice's items still are
    assert not _lines(timed / "synthetic.jsonl") and _lines(timed / "dev_native.jsonl")
    _run(timed, inputs)
    assert (timed / "synthetic.jsonl").read_bytes() == (out / "synthetic.jsonl").read_bytes()


def test_first_renders_the_later_items_alone(corpus, inputs, tmp_path: Path) -> None:
    out, _ = corpus
    later = tmp_path / "later"
    summary = _run(later, inputs, "--first", "4", "--limit", "2")
    assert summary["this_run"]["rendered"] == 2 + 2  # items 4 and 5, and the held-out voice's
    assert _lines(later / "synthetic.jsonl") == _lines(out / "synthetic.jsonl")[4:]
    with pytest.raises(SystemExit, match="--first 99: there are"):
        _run(later, inputs, "--first", "99")


def test_real_copies_are_perturbed_new_speakers_and_reused(corpus, inputs, tmp_path) -> None:
    real = inputs["real"].parent
    for i, seconds in enumerate((1.0, 2.0, 1.5, 3.0)):
        sf.write(real / "audio" / f"{i}.wav", _speechlike(seconds), SAMPLE_RATE)
    out = tmp_path / "copies"
    summary = _run(out, inputs, "--real-copies", "2")
    real_train, _ = split_by_speaker(read_manifest(inputs["real"]), 0.5, 0)
    originals = real_train * 2
    n = len(real_train)
    train = _lines(out / "train.jsonl")
    copies = train[n:3 * n]
    assert train[3 * n:] == _lines(out / "synthetic.jsonl")
    assert [e["speaker"] for e in copies] == [f"{u.speaker}~{k}" for k in (1, 2)
                                              for u in real_train]
    for entry, original in zip(copies, originals, strict=True):
        assert entry["text"] == original.text and entry["copy_of"] == str(original.audio)
        assert entry["source"].endswith("+copies")
        audio, clean = load_audio(out / entry["audio"]), load_audio(original.audio)
        assert abs(sf.info(str(out / entry["audio"])).duration - entry["duration"]) < 1e-3
        assert audio.shape != clean.shape or not np.allclose(audio, clean, atol=1e-3)
    assert summary["this_run"]["real copies rendered"] == 2 * n
    stamps = {p: p.stat().st_mtime_ns for p in (out / "audio" / mc.REAL_COPIES_DIR).rglob("*")}
    again = _run(out, inputs, "--real-copies", "2")
    assert again["this_run"]["real copies reused"] == 2 * n
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert _lines(out / "train.jsonl") == train


def test_plans_are_seeded_per_item() -> None:
    voices = tuple(v for v in cv.VOICES if not v.held_out and not v.restricted)
    settings = mc.Settings(Path("/tmp/x"), tuple(f"prompt {i}" for i in range(40)), voices,
                           (), 7, (0.85, 1.25), 3.0, 0.1, 2)
    assert [mc.plan_item(settings, i) for i in range(5)] == [mc.plan_item(settings, i)
                                                             for i in range(5)]
    other = mc.Settings(**{**settings.__dict__, "seed": 8})
    plans = [mc.plan_item(s, i) for s in (settings, other) for i in range(4)]
    assert len({(p.voice, p.prosody, p.steps) for p in plans}) == 8
    assert settings.train_prompts == 40 - 2 * sum(v.held_out for v in cv.VOICES)


# ---------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_time_stretch_changes_length_not_pitch(factor: float) -> None:
    tone = _tone(300.0, 2.0)
    out = aug.time_stretch(tone, factor)
    assert abs(out.size - tone.size / factor) <= 1
    assert abs(_peak_hz(out) - 300.0) < 3


def test_pitch_shift_keeps_length() -> None:
    out = aug.change_tempo_and_pitch(_tone(300.0, 2.0), 1.0, 2.0)
    assert abs(out.size - 2 * SAMPLE_RATE) <= 2
    assert abs(_peak_hz(out) - 300.0 * 2 ** (2 / 12)) < 4


def test_vocal_tract_warp_moves_the_spectrum_and_keeps_length() -> None:
    source = aug.vtlp_source_bins(1.1, 257)
    assert source[0] == 0 and source[-1] == pytest.approx(256) and np.all(np.diff(source) > 0)
    tone = _tone(1000.0)
    up, down = aug.vocal_tract_warp(tone, 1.1), aug.vocal_tract_warp(tone, 0.9)
    assert up.size == down.size == tone.size
    assert _peak_hz(up) == pytest.approx(1100, abs=40)
    assert _peak_hz(down) == pytest.approx(900, abs=40)


def test_reverberation_keeps_length_and_level_and_adds_a_tail() -> None:
    audio = np.zeros(SAMPLE_RATE, dtype=np.float32)
    audio[1000:1100] = np.random.default_rng(0).standard_normal(100)
    wet = aug.reverberate(audio, 0.5, np.random.default_rng(1))
    assert wet.shape == audio.shape and wet.dtype == np.float32
    assert np.isclose(np.sqrt(np.mean(wet**2)), np.sqrt(np.mean(audio**2)), rtol=1e-3)
    assert np.abs(wet[3000:5000]).max() > 1e-3  # energy after the burst has ended


@pytest.mark.parametrize("snr_db", [0.0, 20.0])
def test_noise_is_added_at_the_requested_snr(snr_db: float) -> None:
    clean = _speechlike()
    noisy = aug.add_noise(clean, snr_db, 1.0, np.random.default_rng(0))
    noise = noisy - clean
    measured = 10 * np.log10(np.mean(clean**2) / np.mean(noise**2))
    assert measured == pytest.approx(snr_db, abs=0.1)


def test_telephone_band_and_8khz_round_trip() -> None:
    noise = aug.coloured_noise(SAMPLE_RATE, 0.0, np.random.default_rng(0))
    band = aug.band_limit(noise, 300.0, 3400.0)
    assert band.size == noise.size and _band_energy(band, 300, 3400) > 0.98
    narrow = aug.rate_round_trip(noise, 8000)
    assert narrow.size == noise.size and _band_energy(narrow, 4100, 8000) < 1e-3
    line = aug.telephone(noise * 0.3, companding=True)
    assert line.size == noise.size and _band_energy(line, 250, 3500) > 0.9
    assert np.abs(line).max() == pytest.approx(np.abs(aug.telephone(noise * 0.3, False)).max(),
                                               rel=0.1)


def test_mu_law_quantises_to_256_levels_with_small_error() -> None:
    audio = _speechlike()
    coded = aug.mu_law(audio)
    assert len(np.unique(coded)) <= 256
    assert np.sqrt(np.mean((coded - audio) ** 2)) < 0.02 * np.sqrt(np.mean(audio**2)) + 5e-3


@pytest.mark.parametrize("codec", sorted(aug.CODECS))
def test_lossy_codecs_keep_length_and_shape(codec: str) -> None:
    audio = _speechlike()
    coded = aug.lossy_codec(audio, codec, aug.CODECS[codec][2][1])
    assert coded.size == audio.size
    lags = range(-800, 801, 4)  # codecs may delay the signal by some milliseconds
    best = max(np.corrcoef(np.roll(coded, -lag)[1000:-1000], audio[1000:-1000])[0, 1]
               for lag in lags)
    assert best > 0.8


def test_padding_level_and_empty_audio() -> None:
    rng = np.random.default_rng(0)
    audio = _speechlike(1.0)
    padded = aug.pad_silence(audio, 0.5, 0.25, rng)
    assert padded.size == audio.size + SAMPLE_RATE * 3 // 4
    assert np.abs(padded[:SAMPLE_RATE // 2]).max() < 1e-3
    assert np.abs(aug.set_level(audio, -6.0)).max() == pytest.approx(10 ** (-6 / 20), rel=1e-4)
    assert np.abs(aug.set_level(audio, 2.0)).max() == 1.0  # clipped
    for kind in aug.EMPTY_KINDS:
        quiet = aug.empty_audio(kind, 1.5, -40.0, rng)
        assert quiet.size == int(1.5 * SAMPLE_RATE)
        rms_db = 20 * np.log10(np.sqrt(np.mean(quiet**2)))
        assert rms_db < -85 if kind == "silence" else rms_db == pytest.approx(-40, abs=0.5)
    with pytest.raises(ValueError, match="unknown empty kind"):
        aug.empty_audio("music", 1.0, -40.0, rng)


def test_augmentation_plans_are_deterministic_and_respect_empty_items() -> None:
    plans = [aug.plan_augmentations(np.random.default_rng([3, i]), False) for i in range(200)]
    assert plans == [aug.plan_augmentations(np.random.default_rng([3, i]), False)
                     for i in range(200)]
    used = {name for plan in plans for name, _ in plan}
    assert used == {step.name for step in aug.AUGMENTATIONS}
    channel = {step.name for step in aug.AUGMENTATIONS if step.on_empty}
    for i in range(200):
        empty = aug.plan_augmentations(np.random.default_rng([3, i]), True)
        assert {name for name, _ in empty} <= channel
    steps = plans[0] + (("pad", (("lead_s", 0.1), ("trail_s", 0.2))),)
    out = aug.apply_augmentations(_speechlike(1.0), steps, np.random.default_rng(0))
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    assert aug.describe((("vtlp", (("alpha", 0.9),)),)) == ["vtlp alpha=0.9"]
