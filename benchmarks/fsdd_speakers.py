"""How the recordings of each Free Spoken Digit Dataset speaker differ: a diagnostic for held-out-speaker runs.

Usage:
    python benchmarks/fsdd_speakers.py --data ../shared/data/fsdd

Per speaker, the mean over his clips of:

- ``seconds``: clip length;
- ``centroid_hz``: spectral centroid of the whole clip (Hann window, power spectrum);
- ``below_300hz``: share of the clip's power below 300 Hz;
- ``rms``: root mean square level (full scale 1);
- ``floor_db``: the quietest 5 % of the clip, as the 5th percentile of its energy over 10 ms against the
  clip's loudest 10 ms. Near 0 means the clip is cut tightly around the word or its background is loud.

Prints a table; writes nothing. Clips are read at their own rate (8 kHz in FSDD).
"""

import argparse

import numpy as np
import pandas as pd

from pipelines.speech_commands.audio import read_wav
from pipelines.speech_commands.layouts import list_fsdd

ENERGY_SECONDS = 0.010
FLOOR_PERCENTILE = 5


def clip_statistics(path):
    """The statistics of one mono clip, as a dict."""
    rate, samples = read_wav(path)
    samples = samples.astype(np.float64)
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    power = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    frequencies = np.fft.rfftfreq(len(samples), 1.0 / rate)
    width = max(1, int(round(ENERGY_SECONDS * rate)))
    energy = np.convolve(samples**2, np.ones(width) / width, mode="valid")
    return {
        "seconds": len(samples) / rate,
        "centroid_hz": float((power * frequencies).sum() / power.sum()),
        "below_300hz": float(power[frequencies < 300].sum() / power.sum()),
        "rms": float(np.sqrt(np.mean(samples**2))),
        "floor_db": float(10 * np.log10((np.percentile(energy, FLOOR_PERCENTILE) + 1e-12) / energy.max())),
    }


def speaker_table(root):
    """Mean statistics per speaker, one row each, speakers sorted."""
    records = list_fsdd(root)
    stats = pd.DataFrame([clip_statistics(path) for path in records["file"]])
    stats["speaker"] = records["speaker"].to_numpy()
    table = stats.groupby("speaker").mean()
    table.insert(0, "clips", stats.groupby("speaker").size())
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/fsdd", help="FSDD folder (with recordings/)")
    args = parser.parse_args()
    table = speaker_table(args.data)
    print(table.to_string(float_format=lambda value: f"{value:.3g}"))


if __name__ == "__main__":
    main()
