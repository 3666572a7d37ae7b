"""Optional: download the Numenta Anomaly Benchmark (NAB v1.1) into the cache, for users online.

Each file of `nab_manifest.json` (the 58 series and the two label files, about 9.6 MB in all) is fetched
from GitHub at the pinned commit and checked against its SHA-256; files already in the cache and
intact are not downloaded again. The folder is in the NAB layout (`data/<category>/<name>.csv`,
`labels/combined_windows.json`). Nothing in the pipelines or the tests calls this module.

Usage:
    python -m pipelines.anomaly_detection.download [--folder F]
    lstm-pipelines train anomaly_detection --set data.format=nab --set data.path=<printed folder>
"""

import argparse
import json
import sys
from pathlib import Path

from pipelines import downloads
from pipelines.errors import PipelineError

COMMIT = "ea702d75cc2258d9d7dd35ca8e5e2539d71f3140"  # numenta/NAB, the v1.1 corpus
BASE_URL = f"https://raw.githubusercontent.com/numenta/NAB/{COMMIT}"
MANIFEST_FILE = Path(__file__).with_name("nab_manifest.json")
LABEL_FILES = ("labels/combined_labels.json", "labels/combined_windows.json")


def load_manifest() -> dict[str, str]:
    """The shipped manifest.

    Returns:
        `{relative path: sha256}` of every file the download fetches.
    """
    return json.loads(Path(MANIFEST_FILE).read_text())


def build_manifest(root: str | Path) -> dict[str, str]:
    """The manifest of a NAB checkout: its label files and every `data/<category>/<name>.csv`.

    Run once against a copy of NAB at `COMMIT` to regenerate the shipped manifest:
    `python -c "from pipelines.anomaly_detection import download as d; d.write_manifest(d.build_manifest('NAB'))"`.

    Args:
        root: Folder of the NAB checkout.

    Returns:
        `{relative path: sha256}`, sorted by path.
    """
    root = Path(root)
    paths = [*LABEL_FILES, *(p.relative_to(root).as_posix() for p in (root / "data").glob("*/*.csv"))]
    return {path: downloads.sha256(root / path) for path in sorted(paths)}


def write_manifest(manifest: dict[str, str], path: str | Path | None = None) -> None:
    """Write a manifest as JSON.

    Args:
        manifest: `{relative path: sha256}`.
        path: The file. Default: the shipped `MANIFEST_FILE`.
    """
    Path(path or MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


def download_nab(folder: str | Path | None = None) -> Path:
    """Download every file of the manifest (cached) and return the NAB-layout folder.

    Args:
        folder: Destination folder. Default: `downloads.cache_dir("nab")`.

    Returns:
        The folder, for `data.format=nab data.path=<it>`.
    """
    folder = Path(folder or downloads.cache_dir("nab"))
    for path, checksum in load_manifest().items():
        downloads.fetch(f"{BASE_URL}/{path}", folder / path, checksum)
    return folder


def main(argv: list[str] | None = None) -> int:
    """Command line: download NAB and print its folder.

    Args:
        argv: The arguments. Default: `sys.argv[1:]`.

    Returns:
        The exit status: 0, or 2 when the download failed.
    """
    parser = argparse.ArgumentParser(
        description="Download the Numenta Anomaly Benchmark into the cache (about 9.6 MB)."
    )
    parser.add_argument("--folder", help="destination folder")
    args = parser.parse_args(argv)
    try:
        print(download_nab(args.folder))
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
