"""Telugu speech synthesis with eSpeak NG, called through ``ctypes``: the voices and emotions of the course's data.

eSpeak NG is a formant synthesizer (Klatt-style resonators driven by a glottal source, after D. Klatt, "Software for a
cascade/parallel formant synthesizer", JASA 1980): robotic, but it speaks Telugu, runs on a laptop CPU in
milliseconds, and every prosodic knob is a number we control. That makes it the right tool for building a labelled
speech data set: each clip's speaker and emotion are known exactly because we set them.

The library ships as a wheel, ``espeakng-loader`` (``libespeak-ng.so`` plus ``espeak-ng-data``), so there is no
system package to install. We bind its C API (``speak_lib.h``) directly: ``espeak_Initialize`` in synchronous mode,
a callback that collects the 16-bit samples, ``espeak_SetVoiceByName("te+<variant>")``, ``espeak_SetParameter``
for rate, pitch, range, volume and word gap, then ``espeak_Synth`` on UTF-8 text and ``espeak_Synchronize``.

Determinism
-----------
Measured on eSpeak NG 1.52: the library keeps synthesis state in globals (phase and pitch counters) that neither
``espeak_Terminate`` nor a second ``espeak_Initialize`` resets, so the same sentence comes out a few samples
longer or shorter depending on what was spoken before; and voices with breath noise draw from a random generator
seeded differently in every process. We therefore load a *private copy* of the shared library (no other user of
libespeak-ng in the process, such as a phonemizer, can share or disturb its globals), load it afresh for every
utterance, seed its noise generator (``espeak_ng_SetRandSeed``), and unload it afterwards. Loading costs about
1 ms, against 2-5 ms to synthesize a sentence. Same text, voice, emotion and jitter seed -> identical samples,
in any order, in any process. (Each load leaks about 2 kB inside libespeak-ng: negligible below millions of clips.)

Voices
------
Four agent voices, the course design (Arjun, Ravi, Priya, Lakshmi), and eight user voices of mixed gender and age.
A voice is an eSpeak variant (formant shapes, glottal source, pitch band in Hz: ``espeak-ng-data/voices/!v/``)
plus the four eSpeak parameters: base pitch and pitch range (0-100 within the variant's band), rate
(words per minute) and volume (0-200, 100 = normal). No user voice shares an agent's variant.

Emotions
--------
An emotion is a :class:`Prosody`: a change to the voice's parameters, after the classic acoustic correlates of
vocal affect (K. Scherer, "Vocal communication of emotion: a review of research paradigms", Speech Communication
2003; M. Schröder, "Emotional speech synthesis: a review", Eurospeech 2001). Formant synthesis cannot change voice
quality much, so each emotion is carried by pitch level, pitch range, tempo, loudness and pauses, which is also
what makes it measurable:

==========  ===========  ===========  ==========  ===========  =========  ===================================
emotion     pitch_shift  range_scale  rate_scale  volume_scale  word_gap  intent
==========  ===========  ===========  ==========  ===========  =========  ===================================
neutral          0          1.00         1.00        1.00          0      identity
happy          +10          1.35         1.08        1.10          0      higher, livelier, slightly fast
sad            -14          0.45         0.75        0.65          1      low, flat, slow, soft
angry           +5          1.50         1.12        1.50          0      loud, fast, moderately high, wide
surprised      +24          1.90         0.98        1.15          0      highest pitch, widest range
fearful        +20          0.70         1.22        0.75          0      high, narrow-ish, fast, soft
calm            -6          0.60         0.88        0.88          0      slightly low, narrow, slow
excited        +16          1.65         1.28        1.30          0      high, wide, fastest, loud
empathetic      -4          0.95         0.82        0.72          1      soft, slow, slightly low
==========  ===========  ===========  ==========  ===========  =========  ===================================

Pitch shift is in eSpeak's 0-100 pitch units (about 1 % of F0 per unit); scales multiply the voice's range, rate
and volume; ``word_gap`` adds pauses between words in units of 10 ms. ``tests/test_synth.py`` measures F0,
duration and RMS of every emotion and checks that they come out as designed.

Conventions: ``wav`` is float32 mono ``(T,)`` in [-1, 1] at ``SAMPLE_RATE`` = 22050 Hz, eSpeak's native rate.
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

SAMPLE_RATE = 22050  # Hz; eSpeak NG's native output rate, checked against espeak_Initialize's answer
LANGUAGE = "te"  # eSpeak's Telugu voice (espeak-ng-data/lang/dra/te)
CACHE_VERSION = 1  # bump when a change here alters the audio, so synthesize_many's cache is not reused
JITTER = 0.03  # jitter_seed draws pitch and rate factors uniformly in [1 - JITTER, 1 + JITTER]
DEFAULT_NOISE_SEED = 1  # seeds eSpeak's breath-noise generator when no jitter_seed is given

EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised", "fearful", "calm", "excited", "empathetic")


class SynthesisError(RuntimeError):
    """eSpeak NG failed, or one job of :func:`synthesize_many` failed: the message names the job and its text."""


# ------------------------------------------------------------------------------------------------ voices, emotions


@dataclass(frozen=True)
class Voice:
    """One speaker: an eSpeak variant plus its base parameters.

    name: the key in ``VOICES``. role: "agent" (the voice agent) or "user" (the people who talk to it).
    gender, age: labels for the data set ("male"/"female"; "teen", "young", "mature", "elderly").
    variant: eSpeak variant, a file under ``espeak-ng-data/voices/!v/`` (``"m3"`` -> voice ``"te+m3"``).
    pitch, pitch_range: eSpeak's 0-100 pitch and range parameters, inside the variant's band (50 = its centre).
    rate: words per minute (eSpeak accepts 80-450; 175 is its default). volume: 0-200, 100 = normal.
    """

    name: str
    role: Literal["agent", "user"]
    gender: Literal["male", "female"]
    age: Literal["teen", "young", "mature", "elderly"]
    description: str
    variant: str
    pitch: int
    pitch_range: int
    rate: int
    volume: int = 75

    @property
    def espeak_name(self) -> str:
        """The name ``espeak_SetVoiceByName`` takes: language and variant, ``"te+m3"``."""
        return f"{LANGUAGE}+{self.variant}"


AGENT_VOICES: dict[str, Voice] = {
    v.name: v
    for v in (
        Voice("Arjun", "agent", "male", "young", "young man, bright and friendly", "m3", 55, 55, 165),
        Voice("Ravi", "agent", "male", "mature", "mature man, low and unhurried", "m1", 38, 40, 145),
        Voice("Priya", "agent", "female", "young", "young woman, lively", "f3", 55, 65, 172),
        Voice("Lakshmi", "agent", "female", "mature", "professional woman, clear and measured", "f4", 42, 45, 155),
    )
}

USER_VOICES: dict[str, Voice] = {
    v.name: v
    for v in (
        Voice("Kiran", "user", "male", "young", "young man, quick", "m2", 58, 60, 180),
        Voice("Suresh", "user", "male", "mature", "middle-aged man, steady", "m6", 40, 45, 150),
        Voice("Venkat", "user", "male", "elderly", "elderly man, deep and slow (Klatt source)", "david", 60, 35, 130),
        Voice("Teja", "user", "male", "teen", "teenage boy, fast and high", "m4", 75, 65, 190),
        Voice("Anjali", "user", "female", "young", "young woman, breathy", "f5", 52, 60, 170),
        Voice("Madhavi", "user", "female", "mature", "middle-aged woman, even", "f1", 40, 50, 150),
        Voice("Kamala", "user", "female", "elderly", "elderly woman, slow and wavering", "grandma", 35, 55, 128),
        Voice("Divya", "user", "female", "teen", "teenage girl, high and quick", "f2", 72, 70, 188),
    )
}

VOICES: dict[str, Voice] = {**AGENT_VOICES, **USER_VOICES}


@dataclass(frozen=True)
class Prosody:
    """How an emotion changes a voice's eSpeak parameters (see the table in the module docstring).

    pitch_shift: added to the voice's 0-100 pitch. range_scale, rate_scale, volume_scale: multiply the voice's
    range, rate and volume. word_gap: extra pause between words, in units of 10 ms.
    """

    pitch_shift: int = 0
    range_scale: float = 1.0
    rate_scale: float = 1.0
    volume_scale: float = 1.0
    word_gap: int = 0


EMOTION_PROSODY: dict[str, Prosody] = {
    "neutral": Prosody(),
    "happy": Prosody(pitch_shift=10, range_scale=1.35, rate_scale=1.08, volume_scale=1.10),
    "sad": Prosody(pitch_shift=-14, range_scale=0.45, rate_scale=0.75, volume_scale=0.65, word_gap=1),
    "angry": Prosody(pitch_shift=5, range_scale=1.50, rate_scale=1.12, volume_scale=1.50),
    "surprised": Prosody(pitch_shift=24, range_scale=1.90, rate_scale=0.98, volume_scale=1.15),
    "fearful": Prosody(pitch_shift=20, range_scale=0.70, rate_scale=1.22, volume_scale=0.75),
    "calm": Prosody(pitch_shift=-6, range_scale=0.60, rate_scale=0.88, volume_scale=0.88),
    "excited": Prosody(pitch_shift=16, range_scale=1.65, rate_scale=1.28, volume_scale=1.30),
    "empathetic": Prosody(pitch_shift=-4, range_scale=0.95, rate_scale=0.82, volume_scale=0.72, word_gap=1),
}
assert tuple(EMOTION_PROSODY) == EMOTIONS, "every emotion needs exactly one prosody, in EMOTIONS order"


def get_voice(voice: str | Voice) -> Voice:
    """The :class:`Voice` named ``voice`` (a ``Voice`` passes through). Raises ValueError listing the names."""
    if isinstance(voice, Voice):
        return voice
    if voice not in VOICES:
        raise ValueError(
            f"unknown voice {voice!r}. Agent voices: {', '.join(AGENT_VOICES)}; "
            f"user voices: {', '.join(USER_VOICES)}."
        )
    return VOICES[voice]


def get_prosody(emotion: str) -> Prosody:
    """The :class:`Prosody` of ``emotion``. Raises ValueError listing the valid emotions."""
    if emotion not in EMOTION_PROSODY:
        raise ValueError(f"unknown emotion {emotion!r}. Valid emotions: {', '.join(EMOTIONS)}.")
    return EMOTION_PROSODY[emotion]


@dataclass(frozen=True)
class ESpeakSettings:
    """The exact values handed to eSpeak for one utterance: voice name and the five ``espeak_SetParameter`` values."""

    voice_name: str
    rate: int
    pitch: int
    pitch_range: int
    volume: int
    word_gap: int


def espeak_settings(voice: str | Voice, emotion: str = "neutral", jitter_seed: int | None = None) -> ESpeakSettings:
    """Combine a voice, an emotion and optional jitter into the parameters eSpeak receives.

    With ``jitter_seed``, pitch and rate are multiplied by factors drawn uniformly from [1 - JITTER, 1 + JITTER]
    (``numpy.random.default_rng(jitter_seed)``), so a data set's clips do not all share one melody and tempo.
    Values are clamped to eSpeak's ranges (pitch, range 0-100; rate 80-450; volume 0-200).
    """
    v, p = get_voice(voice), get_prosody(emotion)
    pitch_factor, rate_factor = 1.0, 1.0
    if jitter_seed is not None:
        pitch_factor, rate_factor = 1.0 + np.random.default_rng(jitter_seed).uniform(-JITTER, JITTER, size=2)
    return ESpeakSettings(
        voice_name=v.espeak_name,
        rate=int(np.clip(round(v.rate * p.rate_scale * rate_factor), 80, 450)),
        pitch=int(np.clip(round((v.pitch + p.pitch_shift) * pitch_factor), 0, 100)),
        pitch_range=int(np.clip(round(v.pitch_range * p.range_scale), 0, 100)),
        volume=int(np.clip(round(v.volume * p.volume_scale), 0, 200)),
        word_gap=max(0, int(p.word_gap)),
    )


# ------------------------------------------------------------------------------------------------ the C binding

# Constants from espeak-ng's public header speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: no audio device, no thread; samples go to our callback
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() when the data cannot be found
_POS_CHARACTER = 1  # espeak_POSITION_TYPE
_CHARS_UTF8 = 1  # espeak_Synth flag: the text is UTF-8
_EE_OK = 0  # espeak_ERROR
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7  # espeak_PARAMETER

# int callback(short *wav, int numsamples, espeak_EVENT *events); returning 0 means "go on".
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _declare(lib: ctypes.CDLL) -> None:
    """Give ctypes the C signatures, so arguments are converted and checked (not guessed as ints)."""
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
        ctypes.c_void_p, ctypes.c_void_p,
    ]  # text, size, position, position_type, end_position, flags, unique_identifier, user_data
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.restype = ctypes.c_int


def _unload(lib: ctypes.CDLL) -> None:
    """dlclose the library so its globals start fresh at the next load (ctypes never unloads by itself)."""
    import _ctypes  # ctypes has no public unload; _ctypes.dlclose (POSIX) / FreeLibrary (Windows) is the idiom

    close = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary")
    close(lib._handle)


class _ESpeak:
    """This process's eSpeak NG: a private copy of the shared library, loaded afresh for each utterance.

    Created once per process by :func:`_engine`, which copies the library and checks it; all calls hold
    ``_LOCK`` because the library's state is global.
    """

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise SynthesisError(
                "eSpeak NG is not installed: `pip install espeakng-loader` (it ships libespeak-ng and its data)."
            ) from exc
        source = Path(espeakng_loader.get_library_path())
        self.data_path = espeakng_loader.get_data_path()
        if not source.is_file():
            raise SynthesisError(
                f"espeakng-loader is installed but its library {source} is missing: "
                "`pip install --force-reinstall espeakng-loader`."
            )
        # A private copy: dlopen of this path is ours alone, so dlclose really unloads it (see module docstring).
        self._tmpdir = tempfile.mkdtemp(prefix="s2slib-espeak-")
        atexit.register(shutil.rmtree, self._tmpdir, ignore_errors=True)
        self.library_path = Path(self._tmpdir) / f"private-{source.name}"
        shutil.copyfile(source, self.library_path)
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept on self: C holds a pointer to it
        lib = self._load()
        try:
            self.version = lib.espeak_Info(None).decode()
        finally:
            lib.espeak_Terminate()
            _unload(lib)

    def _collect(self, wav, numsamples: int, events) -> int:
        """Synth callback: copy eSpeak's buffer of ``numsamples`` int16 samples (it is reused after we return)."""
        if numsamples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0

    def _load(self) -> ctypes.CDLL:
        """Load the private library and initialise it; the caller must ``espeak_Terminate`` and unload."""
        try:
            lib = ctypes.CDLL(str(self.library_path), mode=ctypes.RTLD_LOCAL)
        except OSError as exc:
            raise SynthesisError(
                f"could not load libespeak-ng ({exc}). Reinstall it: `pip install --force-reinstall espeakng-loader`."
            ) from exc
        _declare(lib)
        data_path = self.data_path.encode()
        sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_DONT_EXIT)
        if sample_rate != SAMPLE_RATE:
            lib.espeak_Terminate()
            _unload(lib)
            raise SynthesisError(
                f"espeak_Initialize returned {sample_rate} (expected the sample rate {SAMPLE_RATE} Hz; -1 means its "
                f"data at {self.data_path} could not be read). "
                "Reinstall it: `pip install --force-reinstall espeakng-loader`."
            )
        lib.espeak_SetSynthCallback(self._callback)
        return lib

    def speak(self, text: str, settings: ESpeakSettings, noise_seed: int) -> np.ndarray:
        """Synthesize UTF-8 ``text`` with ``settings``; returns int16 samples ``(T,)`` at ``SAMPLE_RATE``."""
        lib = self._load()
        try:
            if lib.espeak_SetVoiceByName(settings.voice_name.encode()) != _EE_OK:
                raise SynthesisError(f"eSpeak has no voice {settings.voice_name!r} in {self.data_path}.")
            for param, value in (
                (_RATE, settings.rate), (_PITCH, settings.pitch), (_RANGE, settings.pitch_range),
                (_VOLUME, settings.volume), (_WORDGAP, settings.word_gap),
            ):
                if lib.espeak_SetParameter(param, value, 0) != _EE_OK:
                    raise SynthesisError(f"espeak_SetParameter({param}, {value}) failed.")
            lib.espeak_ng_SetRandSeed(noise_seed)
            self._chunks = []
            data = text.encode("utf-8") + b"\0"
            status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if status != _EE_OK:
                raise SynthesisError(f"espeak_Synth returned error {status} for {text!r}.")
            lib.espeak_Synchronize()
        finally:
            lib.espeak_Terminate()
            _unload(lib)
        chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


_LOCK = threading.Lock()  # eSpeak's state is process-global: one utterance at a time per process
_ENGINE: _ESpeak | None = None


def _engine() -> _ESpeak:
    """This process's :class:`_ESpeak`, created on first use."""
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            _ENGINE = _ESpeak()
        return _ENGINE


def espeak_version() -> str:
    """Version string of the eSpeak NG library in use, e.g. ``"1.52.0"`` (part of every cache key)."""
    return _engine().version


# ------------------------------------------------------------------------------------------------ synthesis


def synthesize(
    text: str, voice: str | Voice = "Arjun", emotion: str = "neutral", *, jitter_seed: int | None = None
) -> np.ndarray:
    """Speak Telugu ``text`` with a voice and an emotion.

    Parameters
    ----------
    text: UTF-8 Telugu (Latin digits and punctuation work too).
    voice: a name in ``VOICES`` or a :class:`Voice`.
    emotion: one of ``EMOTIONS``.
    jitter_seed: if given, pitch and rate vary by up to +-3 % (and the breath noise changes), reproducibly.

    Returns
    -------
    wav: float32 ``(T,)`` in [-1, 1] at ``SAMPLE_RATE`` (22050 Hz). Same arguments -> identical samples.

    Raises
    ------
    ValueError: empty text, unknown voice or emotion (the message lists the valid names).
    SynthesisError: eSpeak NG is missing or failed.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text to synthesize must be a non-empty string, got {text!r}.")
    settings = espeak_settings(voice, emotion, jitter_seed)
    noise_seed = DEFAULT_NOISE_SEED if jitter_seed is None else int(jitter_seed)
    engine = _engine()
    with _LOCK:
        samples = engine.speak(text, settings, noise_seed)  # (T,) int16
    if samples.size == 0:
        raise SynthesisError(f"eSpeak produced no audio for {text!r} (voice {settings.voice_name}).")
    return samples.astype(np.float32) / 32768.0


@dataclass(frozen=True)
class SynthJob:
    """One utterance to synthesize: ``id`` names it in progress and error messages; the rest as in synthesize()."""

    id: str
    text: str
    voice: str | Voice = "Arjun"
    emotion: str = "neutral"
    jitter_seed: int | None = None


def job_key(job: SynthJob) -> str:
    """SHA-256 (hex) over everything that determines a job's audio.

    That is the text, every field of the voice and of the emotion's prosody, the jitter seed, the eSpeak NG
    version and ``CACHE_VERSION``; the job's ``id`` is not part of it, so two ids for the same audio share a file.
    """
    payload = {
        "text": job.text,
        "voice": dataclasses.asdict(get_voice(job.voice)),
        "prosody": dataclasses.asdict(get_prosody(job.emotion)),
        "jitter_seed": job.jitter_seed,
        "espeak": espeak_version(),
        "cache_version": CACHE_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _run_job(job: SynthJob) -> np.ndarray:
    """Worker side of synthesize_many: the float32 ``(T,)`` audio of one job."""
    return synthesize(job.text, job.voice, job.emotion, jitter_seed=job.jitter_seed)


def _init_worker() -> None:
    """Process-pool initializer: set up eSpeak once per worker, before its first job."""
    _engine()


def _job_error(job: SynthJob, exc: BaseException) -> SynthesisError:
    return SynthesisError(f"synthesis of job {job.id!r} (text {job.text!r}) failed: {type(exc).__name__}: {exc}")


def synthesize_many(
    jobs: Sequence[SynthJob], cache_dir: str | os.PathLike, num_workers: int = 1, progress: bool = True
) -> list[Path]:
    """Synthesize ``jobs`` into one 22.05 kHz 16-bit WAV each under ``cache_dir``, reusing files already there.

    A job's file is ``cache_dir / f"{job_key(job)}.wav"``: if it exists, the job is skipped (a cache hit), so a
    re-run only synthesizes what is new, and any change of text, voice, prosody, jitter, eSpeak version or
    ``CACHE_VERSION`` produces a new file. Files are written atomically (``s2slib.audio.save_audio``), so an
    interrupted run never leaves a truncated WAV that a later run would trust.

    Parameters
    ----------
    jobs: what to say; all are validated (voice, emotion, text) before anything is synthesized.
    cache_dir: folder for the WAV files (created if missing).
    num_workers: processes to synthesize in; 1 runs in this process. Workers are spawned and each loads eSpeak
        once; the main process writes the files.
    progress: show a tqdm progress bar.

    Returns
    -------
    paths: one per job, in job order.

    Raises
    ------
    ValueError: a job has empty text or an unknown voice or emotion (the message names the job).
    SynthesisError: synthesizing a job failed (the message names the job's id and text).
    """
    # imported here, not at the top: s2slib.audio imports torch, which spawned synthesis workers never need
    from s2slib.audio import save_audio

    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}.")
    cache_dir = Path(cache_dir)
    paths: list[Path] = []
    todo: dict[Path, SynthJob] = {}  # one job per missing file, even if several jobs share it
    for job in jobs:
        if not isinstance(job.text, str) or not job.text.strip():
            raise ValueError(f"job {job.id!r} has empty text; every job needs a non-empty sentence.")
        try:
            path = cache_dir / f"{job_key(job)}.wav"
        except ValueError as exc:
            raise ValueError(f"job {job.id!r}: {exc}") from exc
        paths.append(path)
        if not path.is_file() and path not in todo:
            todo[path] = job

    bar = tqdm(total=len(todo), desc="synthesizing", unit="utt", disable=not progress or not todo)
    try:
        if num_workers == 1 or len(todo) <= 1:
            for path, job in todo.items():
                try:
                    wav = _run_job(job)
                except Exception as exc:
                    raise _job_error(job, exc) from exc
                save_audio(path, wav, SAMPLE_RATE)
                bar.update(1)
        else:
            # spawn, not fork: forking a process that already runs torch or other threads can deadlock
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=min(num_workers, len(todo)), mp_context=context, initializer=_init_worker
            ) as pool:
                futures = {pool.submit(_run_job, job): (path, job) for path, job in todo.items()}
                for future in as_completed(futures):
                    path, job = futures[future]
                    exc = future.exception()
                    if exc is not None:
                        pool.shutdown(wait=False, cancel_futures=True)
                        raise _job_error(job, exc) from exc
                    save_audio(path, future.result(), SAMPLE_RATE)
                    bar.update(1)
    finally:
        bar.close()
    return paths
