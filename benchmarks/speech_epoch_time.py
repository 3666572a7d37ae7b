"""Seconds per training epoch of the held-out-speaker speech run, with the `pipelines` of any checkout.

Usage:
    git worktree add /tmp/old <commit>
    python benchmarks/speech_epoch_time.py --repo /tmp/old --synthetic outputs/speech_networks/synthetic_digits
    python benchmarks/speech_epoch_time.py --repo . --synthetic outputs/speech_networks/synthetic_digits

Trains the settings of `speech_quality.py` (attention RNN, FSDD without `--speaker`, plus the
SYNTHETIC digits) for `--epochs` epochs with `pipelines` imported from `--repo`, and prints the
seconds between the epochs' logged metrics. Run the checkouts one after another on an otherwise
idle machine to tell whether a slower run comes from the code or from the machine.
"""

import argparse
import itertools
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", required=True, help="checkout whose pipelines package is timed")
    parser.add_argument("--data", default="../shared/data/fsdd")
    parser.add_argument("--synthetic", required=True, help="SYNTHETIC digits tree (speech_networks.py writes one)")
    parser.add_argument("--speaker", default="lucas")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    repo = Path(args.repo).resolve()
    sys.path[:0] = [str(repo), str(repo / "benchmarks")]
    from speech_quality import CONFIG, SETTINGS  # the checkout's own settings

    import pipelines
    from pipelines import workflows

    store = tempfile.mkdtemp()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    overrides = [
        f"data.path={Path(args.data).resolve()}", *SETTINGS, f"data.extra_train=[{Path(args.synthetic).resolve()}]",
        "data.split=speaker", f"data.test_speaker={args.speaker}", "seed=42",
        f"train.epochs={args.epochs}", f"train.early_stopping_patience={args.epochs}",
    ]  # fmt: skip
    start = time.monotonic()
    workflows.train("speech_commands", str(repo / CONFIG), overrides)
    total = time.monotonic() - start
    with sqlite3.connect(f"{store}/mlflow.db") as db:
        (run_id,) = db.execute("select run_uuid from runs").fetchone()
        query = "select timestamp from metrics where run_uuid=? and key='train_loss' order by step"
        stamps = [stamp for (stamp,) in db.execute(query, (run_id,))]
    seconds = [(b - a) / 1000 for a, b in itertools.pairwise(stamps)]
    print(f"pipelines from {Path(pipelines.__file__).parent}")
    listed = ", ".join(f"{s:.1f}" for s in seconds)
    print(f"epochs 2..{len(stamps)}: {listed} s (median {statistics.median(seconds):.1f} s); whole run {total:.0f} s")


if __name__ == "__main__":
    main()
