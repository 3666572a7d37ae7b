"""Write SYNTHETIC spoken digits with Flite's voices, in FSDD's labels, as extra training data.

Usage:
    python benchmarks/flite_digits.py --output outputs/flite_digits [--variants 50] [--seed 1]

An experiment beside `write_synthetic_digits` (eSpeak NG): Flite's English voices (`kal16`, `awb`,
`rms`, `slt`: four recorded speakers behind diphone and statistical parametric voices) sound closer
to a person than eSpeak NG's formant synthesis. Each voice says "zero" to "nine" in `--variants`
variants (a random speaking rate and mean pitch each), placed in a 1 s clip over the same noise as
the eSpeak NG digits (80 % of clips, 5 to 30 dB SNR), written at 8 kHz in folders `0/` to `9/`.
Needs the `flite` program (Debian and Ubuntu: `apt install flite`); not part of the package.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from pipelines.speech_commands.audio import read_wav, resample, write_wav
from pipelines.speech_commands.synthetic import DIGITS, SAMPLE_RATE, Espeak, _place, _trim, noise_bank

VOICES = ("kal16", "awb", "rms", "slt")


def flite_say(word, voice, duration_stretch, mean_pitch, folder):
    """`(rate, float32 samples)` of `word` spoken by Flite's `voice`."""
    path = Path(folder, "word.wav")
    command = [
        "flite", "-voice", voice, "--setf", f"duration_stretch={duration_stretch:.3f}",
        "--setf", f"int_f0_target_mean={mean_pitch:.1f}", "-t", word, "-o", str(path),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return read_wav(path)


def write_flite_digits(root, variants=50, seed=1, sample_rate=8000):
    """Every Flite voice says every digit in `variants` variants, into `root/<digit>/<id>_nohash_0.wav`."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    noise = noise_bank(rng, espeak=Espeak.instance())
    with tempfile.TemporaryDirectory() as scratch:
        for voice in VOICES:
            for variant in range(variants):
                stretch, pitch = rng.uniform(0.75, 1.35), rng.uniform(80.0, 240.0)
                for digit, word in enumerate(DIGITS):
                    rate, speech = flite_say(word, voice, stretch, pitch, scratch)
                    clip = _place(rng, resample(_trim(speech), rate, SAMPLE_RATE), noise, SAMPLE_RATE)
                    folder = root / str(digit)
                    folder.mkdir(parents=True, exist_ok=True)
                    name = f"flite{voice}{variant:03d}_nohash_0.wav"
                    write_wav(folder / name, resample(clip, SAMPLE_RATE, sample_rate), sample_rate)
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True)
    parser.add_argument("--variants", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("flite") is None:
        sys.exit("error: the flite program is not installed (Debian and Ubuntu: apt install flite)")
    if Path(args.output).exists() and any(Path(args.output).iterdir()):
        sys.exit(f"error: {args.output} exists and is not empty")
    root = write_flite_digits(args.output, args.variants, args.seed)
    print(f"wrote {sum(1 for _ in root.rglob('*.wav'))} clips to {root}")


if __name__ == "__main__":
    main()
