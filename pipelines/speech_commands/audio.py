"""WAV reading and the checks every clip goes through: mono, 16 kHz, a fixed length.

What happens to unusual audio (each case is counted and logged by `load_clips`):
    unreadable (empty, truncated, not a WAV, no samples, a sample rate outside 1 to 768 kHz, NaN or
        infinite samples): `AudioError`
        naming the file; while loading a dataset the file is skipped instead.
    silent (peak below `SILENCE_PEAK`, -80 dBFS): kept by `load_clip`; a dataset loader skips it,
        since a silent clip in a word's folder carries no word.
    several channels: averaged to mono.
    another sample rate: resampled with `scipy.signal.resample_poly`.
    longer than the clip: cropped to the loudest window; shorter: zero-padded on both sides.
"""

import collections
import logging
import math
import warnings

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

from pipelines.errors import DataError

SILENCE_PEAK = 1e-4
MIN_RATE, MAX_RATE = 1_000, 768_000  # sample rates read_wav accepts
logger = logging.getLogger(__name__)


class AudioError(DataError):
    """A file that cannot be used as audio; the message names the file."""


def read_wav(path):
    """Read a WAV file as float32 in [-1, 1].

    Args:
        path: A `.wav` file (PCM 8/16/24/32-bit or float).

    Returns:
        `(sample_rate, samples)`; samples are `(n,)` or `(n, channels)` float32.

    Metadata chunks scipy does not know (`PEAK`, `bext`, `cue `, ...) are skipped. A file that ends
    before its header says is truncated, unless the header holds the streaming placeholder size
    (`0xFFFFFFFF`, written by encoders that cannot seek back), whose data runs to the end of the file.

    Raises:
        AudioError: The file is empty, truncated, not a WAV file, has no samples, gives a sample
            rate outside `MIN_RATE` to `MAX_RATE` or holds NaN or infinite samples.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", wavfile.WavFileWarning)
            rate, data = wavfile.read(path)
    except Exception as error:  # scipy raises ValueError, struct.error or EOFError
        raise AudioError(f"{path}: not a readable WAV file ({error})") from None
    ended_early = [str(item.message) for item in caught if "EOF prematurely" in str(item.message)]
    if ended_early and not _streamed(path):
        raise AudioError(f"{path}: truncated WAV file ({ended_early[0]})")
    if data.size == 0:
        raise AudioError(f"{path}: WAV file has no samples")
    if not MIN_RATE <= rate <= MAX_RATE:  # an absurd rate would make resampling allocate gigabytes
        raise AudioError(
            f"{path}: WAV header gives a sample rate of {rate} Hz (expected {MIN_RATE:,} to {MAX_RATE:,} Hz)"
        )
    if data.dtype == np.uint8:
        samples = (data.astype("float32") - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        samples = data.astype("float32") / float(2 ** (8 * data.dtype.itemsize - 1))
    else:
        samples = data.astype("float32")
        if not np.isfinite(samples).all():
            raise AudioError(f"{path}: WAV file holds NaN or infinite samples")
    return int(rate), samples


def _streamed(path):
    """True when the RIFF header's size is the streaming placeholder `0xFFFFFFFF`. An RF64 file
    always has it there (its sizes are in the `ds64` chunk), so a short RF64 file is truncated."""
    with open(path, "rb") as file:
        header = file.read(8)
    return len(header) == 8 and header[:4] in (b"RIFF", b"RIFX") and header[4:8] == b"\xff\xff\xff\xff"


def resample(samples, rate, target_rate):
    """Resample a mono signal from `rate` to `target_rate` Hz (polyphase filter)."""
    if rate == target_rate:
        return samples
    divisor = math.gcd(rate, target_rate)
    return resample_poly(samples, target_rate // divisor, rate // divisor).astype("float32")


def fit_length(samples, length):
    """Crop to the loudest `length`-sample window, or zero-pad on both sides to `length`."""
    if len(samples) > length:
        energy = np.concatenate([[0.0], np.cumsum(np.square(samples, dtype="float64"))])
        start = int(np.argmax(energy[length:] - energy[:-length]))
        return samples[start : start + length]
    missing = length - len(samples)
    return np.pad(samples, (missing // 2, missing - missing // 2))


def is_silent(samples):
    """True when the peak amplitude is below `SILENCE_PEAK` (-80 dBFS)."""
    return float(np.max(np.abs(samples))) < SILENCE_PEAK


def load_clip(path, sample_rate=16000, clip_samples=16000, notes=None):
    """One clip as the model takes it: mono float32 `(clip_samples,)` at `sample_rate`.

    Args:
        path: WAV file.
        sample_rate: Target rate in Hz. Default: `16000`.
        clip_samples: Target length in samples. Default: `16000`.
        notes: Optional `collections.Counter`; gets `downmixed`, `resampled`, `cropped`, `padded`.

    Returns:
        float32 array `(clip_samples,)`.
    """
    notes = notes if notes is not None else collections.Counter()
    rate, samples = read_wav(path)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
        notes["downmixed"] += 1
    if rate != sample_rate:
        samples = resample(samples, rate, sample_rate)
        notes["resampled"] += 1
    if len(samples) != clip_samples:
        notes["cropped" if len(samples) > clip_samples else "padded"] += 1
    return np.asarray(fit_length(samples, clip_samples), dtype="float32")


def load_clips(paths, sample_rate=16000, clip_samples=16000, what="clips", keep_silent=False):
    """Load many clips, skipping unreadable and silent files; logs what was done and skipped.

    Args:
        paths: WAV files.
        sample_rate: Target rate in Hz. Default: `16000`.
        clip_samples: Target length in samples. Default: `16000`.
        what: Name used in the log line. Default: `"clips"`.
        keep_silent: Keep silent clips (counted as `silent`) instead of skipping them.
            Default: `False`.

    Returns:
        `(waveforms, kept, notes)`: float32 `(n_kept, clip_samples)`, the indices into `paths` that
        were kept, and a `Counter` of what happened (`skipped_unreadable`, `skipped_silent`, ...).
    """
    notes = collections.Counter()
    waveforms, kept, problems = [], [], []
    for index, path in enumerate(paths):
        try:
            clip = load_clip(path, sample_rate, clip_samples, notes)
        except AudioError as error:
            notes["skipped_unreadable"] += 1
            problems.append(str(error))
            continue
        if is_silent(clip) and keep_silent:
            notes["silent"] += 1
        elif is_silent(clip):
            notes["skipped_silent"] += 1
            problems.append(f"{path}: silent (peak below {SILENCE_PEAK})")
            continue
        waveforms.append(clip)
        kept.append(index)
    summary = ", ".join(f"{key} {count}" for key, count in sorted(notes.items())) or "nothing to fix"
    logger.info("loaded %d of %d %s (%s)", len(kept), len(paths), what, summary)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        logger.warning("skipped %d bad %s: %s", len(problems), what, shown)
    array = np.stack(waveforms) if waveforms else np.zeros((0, clip_samples), dtype="float32")
    return array, np.asarray(kept, dtype="int64"), notes


def write_wav(path, samples, sample_rate=16000):
    """Write float samples in [-1, 1] as 16-bit PCM."""
    pcm = np.clip(np.asarray(samples, dtype="float32"), -1.0, 1.0 - 1.0 / 32768)
    wavfile.write(path, sample_rate, np.round(pcm * 32768).astype("int16"))
