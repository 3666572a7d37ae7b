"""Per-speaker spectral equalisation of FSDD and the synthetic digits (an experiment, not a pipeline option).

Kaldi normalises features per speaker (speaker-level CMVN): the mean over all of a speaker's
utterances carries his voice and microphone, not the words, when every word is in it. Clip-level
normalisation (`data.clip_normalization`) removes each word's own average spectrum too, and hurt
(docs/results.md). This script does the speaker-level version on the waveform, so the pipeline and
its model stay as they are:

1. each speaker's long-term average spectrum (LTAS): the mean power spectrum of the frames within
   `--speech-db` of each clip's loudest frame, over all his clips, in dB, smoothed across frequency;
2. the reference: the mean LTAS (dB) of the FSDD speakers;
3. every clip of a speaker goes through one linear-phase FIR filter whose gain is the reference
   minus his LTAS (clipped to `--max-gain-db`), so every speaker has the reference's LTAS.

A speaker is `{speaker}` in FSDD's `{digit}_{speaker}_{index}.wav` and the voice id in the synthetic
tree's `<digit>/<voice>_nohash_0.wav` (each voice says every digit once). The held-out speaker's
filter comes from his own 500 clips, without their labels: adaptation to the test speaker, as
Kaldi's per-speaker CMVN does at test time.

Usage:
    python benchmarks/speaker_equalise.py --fsdd ../shared/data/fsdd \\
        --synthetic outputs/speech_networks/synthetic_digits --output outputs/speaker_equalised
writes `<output>/fsdd/recordings/*.wav`, `<output>/synthetic_digits/<digit>/*.wav` and
`<output>/gains.json` (each speaker's gain in dB per frequency bin).
"""

import argparse
import collections
import json
import shutil
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.ndimage import gaussian_filter1d
from scipy.signal import firwin2, oaconvolve, stft

RATE = 8000  # FSDD's and the synthetic digits' sample rate
N_FFT = 256  # 32 ms at 8 kHz
HOP = 80  # 10 ms
TAPS = 257


def read(path):
    """`float64` samples in [-1, 1] of an 8 kHz 16-bit mono WAV."""
    rate, data = wavfile.read(path)
    if rate != RATE or data.ndim != 1 or data.dtype != np.int16:
        raise SystemExit(f"error: {path}: expected 8 kHz 16-bit mono, got {rate} Hz {data.dtype} {data.shape}")
    return data.astype(np.float64) / 32768.0


def speech_power(samples, speech_db):
    """Summed power spectrum of the clip's frames within `speech_db` of its loudest, and their count."""
    _, _, spectrum = stft(samples, fs=RATE, nperseg=N_FFT, noverlap=N_FFT - HOP, boundary=None, padded=False)
    power = np.abs(spectrum) ** 2  # (bins, frames)
    if power.shape[1] == 0:
        return np.zeros(N_FFT // 2 + 1), 0
    energy = power.sum(axis=0)
    loud = energy >= energy.max() * 10 ** (-speech_db / 10)
    return power[:, loud].sum(axis=1), int(loud.sum())


def ltas_db(paths, speech_db):
    """The long-term average spectrum of these clips' speech frames, in dB, smoothed across frequency."""
    total, frames = np.zeros(N_FFT // 2 + 1), 0
    for path in paths:
        power, count = speech_power(read(path), speech_db)
        total, frames = total + power, frames + count
    return gaussian_filter1d(10 * np.log10(total / frames + 1e-12), sigma=2.0, mode="nearest")


def equalise(paths, gain_db, destination):
    """Filter every clip through the speaker's FIR filter and write it as 16-bit PCM."""
    frequencies = np.linspace(0, RATE / 2, N_FFT // 2 + 1)
    taps = firwin2(TAPS, frequencies, 10 ** (gain_db / 20), fs=RATE)
    for path, target in zip(paths, destination, strict=True):
        filtered = oaconvolve(read(path), taps, mode="same")
        peak = np.abs(filtered).max()
        if peak > 0.99:
            filtered *= 0.99 / peak
        target.parent.mkdir(parents=True, exist_ok=True)
        wavfile.write(target, RATE, np.round(filtered * 32767).astype(np.int16))


def group(fsdd, synthetic):
    """`{speaker: [(source, target relative path), ...]}` of FSDD speakers and synthetic voices."""
    speakers = collections.defaultdict(list)
    for path in sorted(Path(fsdd, "recordings").glob("*.wav")):
        speakers[path.stem.split("_")[1]].append((path, Path("fsdd", "recordings", path.name)))
    fsdd_speakers = sorted(speakers)
    for path in sorted(Path(synthetic).glob("*/*.wav")):
        voice = "synthetic:" + path.name.split("_nohash_")[0]
        speakers[voice].append((path, Path("synthetic_digits", path.parent.name, path.name)))
    return speakers, fsdd_speakers


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", required=True, help="FSDD folder (with recordings/)")
    parser.add_argument("--synthetic", required=True, help="synthetic digits tree (<digit>/<voice>_nohash_0.wav)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--speech-db", type=float, default=30.0, help="frames this far below the loudest count")
    parser.add_argument("--max-gain-db", type=float, default=15.0, help="largest boost or cut of any frequency")
    args = parser.parse_args()
    speakers, fsdd_speakers = group(args.fsdd, args.synthetic)
    spectra = {name: ltas_db([source for source, _ in clips], args.speech_db) for name, clips in speakers.items()}
    reference = np.mean([spectra[name] for name in fsdd_speakers], axis=0)
    gains = {}
    for name, clips in speakers.items():
        gains[name] = np.clip(reference - spectra[name], -args.max_gain_db, args.max_gain_db)
        equalise([source for source, _ in clips], gains[name], [Path(args.output, target) for _, target in clips])
    readme = Path(args.synthetic, "README.md")
    if readme.exists():
        shutil.copy(readme, Path(args.output, "synthetic_digits", "README.md"))
    Path(args.output, "gains.json").write_text(
        json.dumps({name: np.round(gain, 2).tolist() for name, gain in gains.items()}, indent=0)
    )
    for name in fsdd_speakers:
        gain = gains[name]
        print(f"{name:10s} gain: min {gain.min():+.1f} dB, max {gain.max():+.1f} dB, mean {gain.mean():+.1f} dB")
    synthetic_means = [gains[name].mean() for name in speakers if name.startswith("synthetic:")]
    print(f"{len(synthetic_means)} synthetic voices: mean gain {np.mean(synthetic_means):+.1f} dB")


if __name__ == "__main__":
    main()
