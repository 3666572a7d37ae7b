"""The offline default data: SYNTHETIC spoken commands from eSpeak NG, in the Speech Commands layout.

eSpeak NG comes from the `espeakng-loader` wheel (the library and its voice data; GPL-3.0, so it is
the optional `speech` extra: `pip install -e '.[speech]'`) and is driven through ctypes. Each
synthetic "speaker" is an English accent, a voice variant, a speaking rate, a pitch and a pitch
range; every speaker says every word once, placed at a random point of a 1 s clip at a random level,
over noise at a random signal-to-noise ratio. Speakers are split 80/10/10 into train, validation
and test through `validation_list.txt` and `testing_list.txt`, as in the real dataset, and
`_background_noise_/` holds generated white, pink, brown, hum and babble noise.

Generation is seeded: eSpeak NG's own random numbers (the breath noise of voice variants f2, f3 and f5)
are reseeded before every utterance, so a tree written twice is bit-identical.

`write_synthetic_digits` writes "zero" to "nine" in folders `0/` to `9/` (FSDD's labels), at 8 kHz by
default: extra training data for a digit recogniser with few real speakers (`data.extra_train`).

Example:
    >>> root = ensure_default_data()           # generated once into the cache folder
    >>> write_synthetic_dataset("synthetic/", speakers=20, seed=0)
    >>> write_synthetic_digits("synthetic_digits/")  # or: python -m pipelines.speech_commands.synthetic --digits DIR
"""

import argparse
import ctypes
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from pipelines.errors import DataError
from pipelines.speech_commands.data import COMMANDS, NOISE_FOLDER, resample, write_wav

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
OTHER_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow", "zero", "one")
ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "Alex", "Andy", "Annie", "ed", "edward", "iven", "linda", "steph", "quincy", "robert", "travis", "klatt",
)  # fmt: skip
BABBLE_TEXT = (
    "the quick brown fox jumps over the lazy dog while the kettle boils in the kitchen",
    "please call the office tomorrow morning and tell them the train will be late again",
    "she sells sea shells by the sea shore and counts them slowly one by one",
    "we went to the market on saturday and bought apples bread cheese and fresh flowers",
)
DATASET_VERSION = "v1"
CACHE_ENV = "LSTM_PIPELINES_CACHE"
SAMPLE_RATE = 16000
INSTALL_HINT = (
    "The default speech data is synthesised with eSpeak NG, which is not installed. "
    "Install the speech extra: pip install -e '.[speech]' "
    "(or set data.path to a Speech Commands, FSDD or one-folder-per-label tree)."
)
logger = logging.getLogger(__name__)

# eSpeak NG API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class Espeak:
    """A ctypes handle on the eSpeak NG library of `espeakng-loader` (one per process).

    Example:
        >>> voice = Espeak.instance()
        >>> rate, samples = voice.say("yes", voice="en-us+f3", words_per_minute=160, pitch=60)
    """

    _instance = None

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError:
            raise DataError(INSTALL_HINT) from None
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        self.sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0
        )
        if self.sample_rate <= 0:
            raise DataError(f"eSpeak NG failed to initialise (data in {espeakng_loader.get_data_path()})")
        self._chunks = []
        self._callback = _CALLBACK(self._collect)  # kept on self: the library holds a raw pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib

    @classmethod
    def instance(cls) -> "Espeak":
        """The process-wide handle (the library has global state).

        Returns:
            The one `Espeak` of this process, created on first use.

        Raises:
            DataError: eSpeak NG (the `speech` extra) is not installed or fails to start.
        """
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _collect(self, wav, count, events):
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def say(
        self, text: str, voice: str = "en", words_per_minute: int = 175, pitch: int = 50, pitch_range: int = 50
    ) -> tuple[int, np.ndarray]:
        """Synthesise `text`.

        Args:
            text: What to say.
            voice: `language[+variant]`, e.g. `"en-us+f3"`. Default: `"en"`.
            words_per_minute: Speaking rate, 80-450. Default: `175`.
            pitch: Base pitch, 0-100. Default: `50`.
            pitch_range: Pitch variation, 0-100. Default: `50`.

        Returns:
            `(sample_rate, samples)`, float32 samples in [-1, 1].
        """
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"Unknown eSpeak NG voice. Received: voice={voice!r}")
        for parameter, value in ((_RATE, words_per_minute), (_PITCH, pitch), (_RANGE, pitch_range)):
            lib.espeak_SetParameter(parameter, int(value), 0)
        lib.espeak_ng_SetRandSeed(0)  # the breath noise of some variants; else seeded from the clock
        self._chunks = []
        encoded = text.encode()
        lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype="int16")
        return self.sample_rate, samples.astype("float32") / 32768.0


def _trim(samples, threshold=0.02):
    loud = np.flatnonzero(np.abs(samples) > threshold * max(float(np.max(np.abs(samples))), 1e-9))
    return samples[loud[0] : loud[-1] + 1] if len(loud) else samples


def _colored_noise(rng, seconds, exponent):
    """Noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit peak."""
    n = int(seconds * SAMPLE_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[1:] /= freqs[1:] ** (exponent / 2)
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return (noise / np.max(np.abs(noise))).astype("float32")


def noise_bank(rng: np.random.Generator, seconds: float = 20.0, espeak: Espeak | None = None) -> dict[str, np.ndarray]:
    """Generated background noise at `SAMPLE_RATE`.

    Args:
        rng: Draws the noise.
        seconds: Length of each kind. Default: `20.0`.
        espeak: With it, babble (several voices at once) too. Default: `None`.

    Returns:
        `{name: float32 samples}` of white, pink, brown and hum noise (and babble).
    """
    time = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * time + rng.uniform(0, 6.3)) / k for k in range(1, 8))
    hum = hum + 0.3 * _colored_noise(rng, seconds, 1.0)
    bank = {
        "white_noise": _colored_noise(rng, seconds, 0.0),
        "pink_noise": _colored_noise(rng, seconds, 1.0),
        "brown_noise": _colored_noise(rng, seconds, 2.0),
        "hum": (hum / np.max(np.abs(hum))).astype("float32"),
    }
    if espeak is not None:
        babble = np.zeros(len(time), dtype="float32")
        for index in range(6):
            voice = f"{ACCENTS[index % len(ACCENTS)]}+{VARIANTS[(5 * index) % len(VARIANTS)]}"
            rate, speech = espeak.say(" ".join(BABBLE_TEXT), voice=voice, words_per_minute=170 + 10 * index)
            speech = resample(speech, rate, SAMPLE_RATE)
            speech = np.tile(speech, int(np.ceil(len(time) / len(speech))))
            babble += np.roll(speech[: len(time)], int(rng.integers(len(time))))
        bank["babble"] = babble / np.max(np.abs(babble))
    return bank


def _speakers(rng, count):
    speakers = []
    for _ in range(count):
        accent, variant = ACCENTS[rng.integers(len(ACCENTS))], VARIANTS[rng.integers(len(VARIANTS))]
        rate, pitch, pitch_range = int(rng.integers(120, 230)), int(rng.integers(20, 81)), int(rng.integers(20, 90))
        settings = (f"{accent}+{variant}", rate, pitch, pitch_range)
        speaker_id = hashlib.sha1(repr(settings).encode()).hexdigest()[:8]
        speakers.append((speaker_id, *settings))
    return speakers


def _place(rng, word, noise, clip_samples):
    """A word at a random level and offset in a clip over noise at 5-30 dB SNR (80 % of clips)."""
    word = word[:clip_samples] * rng.uniform(0.1, 0.9) / max(float(np.max(np.abs(word))), 1e-9)
    clip = np.zeros(clip_samples, dtype="float32")
    start = int(rng.integers(0, clip_samples - len(word) + 1))
    clip[start : start + len(word)] = word
    if rng.random() < 0.8:
        names = sorted(noise)
        source = noise[names[rng.integers(len(names))]]
        offset = int(rng.integers(0, len(source) - clip_samples))
        segment = source[offset : offset + clip_samples]
        snr_db = rng.uniform(5.0, 30.0)
        word_power = float(np.mean(np.square(word)))
        scale = np.sqrt(word_power / (float(np.mean(np.square(segment))) + 1e-12) / 10 ** (snr_db / 10))
        clip += scale * segment
    return np.clip(clip, -1.0, 1.0)


def _say_words(espeak, rng, root, folders, cast, noise, clip_seconds, sample_rate):
    """Every speaker of `cast` says every word of `folders` (word -> folder name) once, into
    `root/<folder>/<speaker>_nohash_0.wav` at `sample_rate`."""
    clip_samples = int(round(clip_seconds * SAMPLE_RATE))
    for word, folder in folders.items():
        (root / folder).mkdir(exist_ok=True)
        for speaker_id, voice, rate, pitch, pitch_range in cast:
            jitter = rng.uniform(0.9, 1.1)
            rate_hz, speech = espeak.say(word, voice, int(rate * jitter), pitch, pitch_range)
            clip = _place(rng, resample(_trim(speech), rate_hz, SAMPLE_RATE), noise, clip_samples)
            name = f"{speaker_id}_nohash_0.wav"
            write_wav(root / folder / name, resample(clip, SAMPLE_RATE, sample_rate), sample_rate)


def write_synthetic_dataset(
    root: str | Path,
    words: tuple[str, ...] = COMMANDS + OTHER_WORDS,
    speakers: int = 120,
    seed: int = 0,
    clip_seconds: float = 1.0,
) -> Path:
    """Write a synthetic Speech Commands tree.

    Args:
        root: Folder to create (must not exist or be empty).
        words: Words to say; one folder each. Default: the 10 commands and 12 other words.
        speakers: Synthetic speakers; each says each word once. Default: `120`.
        seed: Random seed of voices, placement and noise. Default: `0`.
        clip_seconds: Clip length. Default: `1.0`.

    Returns:
        The root `Path`.
    """
    espeak = Espeak.instance()
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    noise = noise_bank(rng, espeak=espeak)
    (root / NOISE_FOLDER).mkdir(exist_ok=True)
    for name, samples in noise.items():
        write_wav(root / NOISE_FOLDER / f"{name}.wav", 0.5 * samples)
    cast = _speakers(rng, speakers)
    order = rng.permutation(len(cast))
    n_val = n_test = max(1, len(cast) // 10)
    split_of = {cast[i][0]: "val" for i in order[:n_val]} | {cast[i][0]: "test" for i in order[n_val : n_val + n_test]}
    _say_words(espeak, rng, root, {word: word for word in words}, cast, noise, clip_seconds, SAMPLE_RATE)
    lists = {"val": [], "test": []}
    for word in words:
        for speaker_id, *_ in cast:
            if speaker_id in split_of:
                lists[split_of[speaker_id]].append(f"{word}/{speaker_id}_nohash_0.wav")
    (root / "validation_list.txt").write_text("".join(f"{line}\n" for line in lists["val"]))
    (root / "testing_list.txt").write_text("".join(f"{line}\n" for line in lists["test"]))
    (root / "README.md").write_text(
        "# SYNTHETIC speech commands\n\n"
        "Generated by pipelines.speech_commands.synthetic with eSpeak NG (GPL-3.0) from the espeakng-loader "
        f"wheel: {len(cast)} synthetic speakers (accent, voice variant, rate, pitch), {len(words)} words, seed "
        f"{seed}. Not recorded speech; use it for demos and tests, not to claim real-world accuracy.\n"
    )
    return root


def write_synthetic_digits(
    root: str | Path, speakers: int = 200, seed: int = 1, sample_rate: int = 8000, clip_seconds: float = 1.0
) -> Path:
    """Write SYNTHETIC spoken digits as a one-folder-per-label tree (`0/` ... `9/`), FSDD's labels.

    Meant as extra training data (`data.extra_train`) for a digit recogniser with few real
    speakers: every synthetic speaker (English accent, voice variant, rate, pitch) says "zero" to
    "nine" once, over noise in 80 % of clips, written at `sample_rate` (FSDD's 8 kHz by default,
    so the clips carry the same band as the real recordings).

    Args:
        root: Folder to create (must not exist or be empty).
        speakers: Synthetic speakers. Default: `200`.
        seed: Random seed of voices, placement and noise. Default: `1`.
        sample_rate: Rate of the written WAV files in Hz. Default: `8000`.
        clip_seconds: Clip length. Default: `1.0`.

    Returns:
        The root `Path`.
    """
    espeak = Espeak.instance()
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    noise = noise_bank(rng, espeak=espeak)
    cast = _speakers(rng, speakers)
    folders = {word: str(digit) for digit, word in enumerate(DIGITS)}
    _say_words(espeak, rng, root, folders, cast, noise, clip_seconds, sample_rate)
    (root / "README.md").write_text(
        "# SYNTHETIC spoken digits\n\n"
        "Generated by pipelines.speech_commands.synthetic.write_synthetic_digits with eSpeak NG (GPL-3.0) from the "
        f"espeakng-loader wheel: {len(cast)} synthetic speakers, the words zero to nine in folders 0 to 9, "
        f"{sample_rate} Hz, seed {seed}. Not recorded speech: extra training data, never test data.\n"
    )
    return root


def default_data_dir() -> Path:
    """Cache folder of the default data.

    Returns:
        `speech_commands_synthetic_<version>` in `$LSTM_PIPELINES_CACHE` or `~/.cache/lstm-pipelines`.
    """
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lstm-pipelines"
    return Path(base) / f"speech_commands_synthetic_{DATASET_VERSION}"


def ensure_default_data() -> Path:
    """The default synthetic dataset, generated on first use (a few seconds) into the cache folder.

    Returns:
        `default_data_dir()`, complete.

    Raises:
        DataError: It must be generated and eSpeak NG (the `speech` extra) is not installed.
    """
    root = default_data_dir()
    if (root / ".complete").is_file():
        return root
    logger.info("synthesising the default speech data (eSpeak NG, SYNTHETIC) into %s", root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root.parent))
    try:
        write_synthetic_dataset(staging)
        (staging / ".complete").touch()
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def main(argv: list[str] | None = None) -> None:
    """`python -m pipelines.speech_commands.synthetic [--digits] ROOT`: write a SYNTHETIC tree.

    Args:
        argv: Command-line arguments; `None` reads `sys.argv`. Default: `None`.
    """
    parser = argparse.ArgumentParser(description="Write SYNTHETIC eSpeak NG speech (needs the speech extra).")
    parser.add_argument("root", help="folder to write (created)")
    parser.add_argument("--digits", action="store_true", help="zero to nine in folders 0-9, not the commands")
    parser.add_argument("--speakers", type=int, default=None, help="synthetic speakers (default 120, digits 200)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 0, digits 1)")
    parser.add_argument("--sample-rate", type=int, default=8000, help="digits only: WAV rate in Hz (default 8000)")
    args = parser.parse_args(argv)
    options = {key: value for key, value in (("speakers", args.speakers), ("seed", args.seed)) if value is not None}
    try:
        if args.digits:
            root = write_synthetic_digits(args.root, sample_rate=args.sample_rate, **options)
        else:
            root = write_synthetic_dataset(args.root, **options)
    except DataError as error:
        parser.exit(2, f"error: {error}\n")
    print(root)


if __name__ == "__main__":
    main()
