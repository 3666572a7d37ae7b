"""WAV reading and the checks every clip goes through: mono, 16 kHz, a fixed length.

What happens to unusual audio (each case is counted and logged by `load_clips`):
    unreadable (empty, truncated, not a WAV, no samples, a sample rate outside 1 to 768 kHz, NaN or
        infinite samples): `AudioError`
        naming the file; while loading a dataset the file is skipped instead.
    a wrong RIFF size with a complete data chunk, or a streamed file (placeholder sizes) that ends
        inside a frame: read; the partial frame is dropped.
    silent (peak below `SILENCE_PEAK`, -80 dBFS): kept by `load_clip`; a dataset loader skips it,
        since a silent clip in a word's folder carries no word.
    several channels: averaged to mono.
    another sample rate: resampled with `scipy.signal.resample_poly`.
    longer than the clip: cropped to the loudest window; shorter: zero-padded on both sides.
"""

import collections
import io
import logging
import math
import struct
import warnings

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

from pipelines.errors import DataError

SILENCE_PEAK = 1e-4
MIN_RATE, MAX_RATE = 1_000, 768_000  # sample rates read_wav accepts
_PLACEHOLDER = 0xFFFFFFFF  # the size an encoder that cannot seek back leaves in a WAV header
logger = logging.getLogger(__name__)


class AudioError(DataError):
    """A file that cannot be used as audio; the message names the file."""


def read_wav(path):
    """Read a WAV file as float32 in [-1, 1].

    Args:
        path: A `.wav` file (PCM 8/16/24/32-bit or float; RIFF, RIFX or RF64).

    Returns:
        `(sample_rate, samples)`; samples are `(n,)` or `(n, channels)` float32.

    Metadata chunks scipy does not know (`PEAK`, `bext`, `cue `, ...) are skipped. A file is truncated
    when its `data` chunk holds fewer bytes than the chunk's header says; a wrong RIFF size alone is
    ignored. The streaming placeholder size (`0xFFFFFFFF`, written by encoders that cannot seek back)
    means the data runs to the end of the file, and a trailing partial frame there is dropped.

    Raises:
        AudioError: The file is empty, truncated, not a WAV file, has no samples, gives a sample
            rate outside `MIN_RATE` to `MAX_RATE` or holds NaN or infinite samples.
    """
    try:
        with open(path, "rb") as file:
            content = file.read()
        layout = _data_layout(content)
        if layout is not None and layout.promised_bytes is None and layout.frame_bytes:
            whole_frames = (len(content) - layout.start) // layout.frame_bytes
            content = content[: layout.start + whole_frames * layout.frame_bytes]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", wavfile.WavFileWarning)
            rate, data = wavfile.read(io.BytesIO(content))
    except Exception as error:  # scipy raises ValueError, struct.error or EOFError; open raises OSError
        raise AudioError(f"{path}: not a readable WAV file ({error})") from None
    if layout is not None and layout.promised_bytes is not None:
        available = len(content) - layout.start
        if available < layout.promised_bytes:
            raise AudioError(
                f"{path}: truncated WAV file (the data chunk holds {available:,} of {layout.promised_bytes:,} bytes)"
            )
    elif layout is None:  # chunks scipy can read but this walk cannot: trust scipy's own check
        ended_early = [str(item.message) for item in caught if "EOF prematurely" in str(item.message)]
        if ended_early:
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


DataLayout = collections.namedtuple("DataLayout", ["start", "promised_bytes", "frame_bytes"])
DataLayout.__doc__ = """Where a WAV file's samples start (byte offset), how many bytes its header promises
(None for the streaming placeholder) and the bytes per frame (`nBlockAlign`; None without a `fmt ` chunk first)."""


def _data_layout(content):
    """Walk a WAV file's chunks up to its `data` chunk.

    Args:
        content: The whole file's bytes.

    Returns:
        A `DataLayout`, or None when the bytes are not a RIFF/RIFX/RF64 WAVE file or no `data` chunk
        header lies within them.
    """
    form = content[:4]
    if form not in (b"RIFF", b"RIFX", b"RF64") or content[8:12] != b"WAVE":
        return None
    size_format = ">I" if form == b"RIFX" else "<I"
    position, frame_bytes, rf64_data_bytes = 12, None, None
    while position + 8 <= len(content):
        chunk_id = content[position : position + 4]
        (size,) = struct.unpack(size_format, content[position + 4 : position + 8])
        body = position + 8
        if chunk_id == b"ds64" and len(content) >= body + 16:
            (rf64_data_bytes,) = struct.unpack("<Q", content[body + 8 : body + 16])
        elif chunk_id == b"fmt " and len(content) >= body + 14:
            (frame_bytes,) = struct.unpack(size_format[0] + "H", content[body + 12 : body + 14])
        elif chunk_id == b"data":
            if size != _PLACEHOLDER:
                promised = size
            else:  # RF64 keeps the real size in ds64; RIFF and RIFX mean "to the end of the file"
                promised = rf64_data_bytes if form == b"RF64" else None
            return DataLayout(body, promised, frame_bytes or None)
        position = body + size + (size & 1)
    return None


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
