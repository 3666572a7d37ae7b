"""Optional: download Google Speech Commands (v0.02 by default, or v0.01) into the cache, for users online.

The archive (2.4 GB for v0.02) is verified against its published SHA-256, then extracted into
`<folder>/speech_commands_v<version>/`, which is in the `speech_commands` layout the task reads. A
`.complete` marker is written once extraction finishes, so an interrupted extraction is redone. The
archive stays in the cache; delete it once extracted to save the space. Nothing in the pipelines or
the tests calls this module.

Usage:
    python -m pipelines.speech_commands.download [--version 0.02] [--folder F]
    lstm-pipelines train speech_commands --set data.layout=speech_commands --set data.path=<printed folder>
"""

import argparse
import shutil
import sys
from pathlib import Path

from pipelines import downloads
from pipelines.errors import PipelineError

# version -> (url, sha256). Both checksums are torchaudio's `_CHECKSUMS` (torchaudio/datasets/speechcommands.py);
# v0.02 also matches tensorflow_datasets' url_checksums/speech_commands.txt (2,428,923,189 bytes).
VERSIONS = {
    "0.02": (
        "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
        "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
    ),
    "0.01": (
        "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz",
        "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
    ),
}
MARKER = ".complete"


def download_speech_commands(version: str = "0.02", folder: str | Path | None = None) -> Path:
    """Download and extract Speech Commands (cached) and return the dataset folder.

    Args:
        version: `"0.02"` or `"0.01"`. Default: `"0.02"`.
        folder: Cache folder for the archive and the extracted dataset. Default:
            `downloads.cache_dir("speech_commands")`.

    Returns:
        `<folder>/speech_commands_v<version>`, for `data.layout=speech_commands data.path=<it>`.
    """
    if version not in VERSIONS:
        raise PipelineError(f"Expected a Speech Commands version in {sorted(VERSIONS)}. Received: version={version!r}")
    url, checksum = VERSIONS[version]
    folder = Path(folder or downloads.cache_dir("speech_commands"))
    target = folder / f"speech_commands_v{version}"
    if (target / MARKER).is_file():
        return target
    archive = downloads.fetch(url, folder / Path(url).name, checksum)
    if target.exists():  # an interrupted extraction: start it again from scratch
        shutil.rmtree(target)
    downloads.extract_tar(archive, target)
    (target / MARKER).write_text(f"{checksum}  {archive.name}\n")
    return target


def main(argv: list[str] | None = None) -> int:
    """`python -m pipelines.speech_commands.download`: print the dataset folder.

    Args:
        argv: Command-line arguments; `None` reads `sys.argv`. Default: `None`.

    Returns:
        The exit status: 0, or 2 when the download fails.
    """
    parser = argparse.ArgumentParser(description="Download Google Speech Commands into the cache (about 2.4 GB).")
    parser.add_argument("--version", default="0.02", choices=sorted(VERSIONS))
    parser.add_argument("--folder", help="cache folder for the archive and the extracted dataset")
    args = parser.parse_args(argv)
    try:
        print(download_speech_commands(args.version, args.folder))
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
