"""Cached, checksum-verified downloads for the optional dataset downloaders.

Nothing in the pipelines or the tests needs the network: these helpers serve the `download` modules
a user runs by hand to fetch a real dataset into the cache. `pooch` does the download, the checksum
and the cache: the body goes to a temporary file next to the destination, which takes the
destination's name only once its SHA-256 matches, and is deleted otherwise.

Written here because pooch does not do it: the messages (pooch passes on requests' exceptions and
raises a bare `ValueError` on a checksum mismatch, neither saying what to do), the check for a
folder where the file goes (pooch would hash the folder and fail with `IsADirectoryError`),
`file://` sources (pooch has no downloader for them), and tar extraction (`pooch.Untar` applies
tarfile's `data` filter only on Python 3.12 and newer, so on 3.11 it would let a member land
outside the folder; here the filter is always on, and a member that tries is named).
"""

import contextlib
import logging
import os
import shutil
import tarfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pooch
import requests

from pipelines.errors import DataError, PipelineError

CACHE_ENV = "LSTM_PIPELINES_CACHE"
CHUNK_BYTES = 1 << 20


def cache_dir(name: str) -> Path:
    """The cache folder of one dataset.

    Args:
        name: Folder name, e.g. `"stocks"`.

    Returns:
        `$LSTM_PIPELINES_CACHE/<name>`, default `~/.cache/lstm-pipelines/<name>`.
    """
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lstm-pipelines"
    return Path(root) / name


def make_folder(folder: str | os.PathLike) -> Path:
    """Create a folder and its parents.

    Args:
        folder: The folder to create.

    Returns:
        `folder` as a `Path`.

    Raises:
        PipelineError: The folder cannot be created (a file in the way, no permission).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PipelineError(f"cannot create the download folder {folder}: {error.strerror or error}") from None
    return folder


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks (archives can be gigabytes).

    Args:
        path: The file.

    Returns:
        The lowercase hex digest.
    """
    return pooch.file_hash(str(path), alg="sha256")


def fetch(url: str, dest: str | os.PathLike, sha256_hex: str, timeout: float = 30) -> Path:
    """Download `url` to `dest` unless an intact copy is already there.

    A cached copy whose SHA-256 does not match is downloaded again. `dest` is never a partial or
    unverified file: the body is written to a temporary file in `dest`'s folder first.

    Args:
        url: What to download, an `http(s)://` or `file://` URL.
        dest: Where the verified file goes.
        sha256_hex: Expected hex SHA-256 of the file.
        timeout: Seconds to wait on the connection. Default: `30`.

    Returns:
        `dest` as a `Path`.

    Raises:
        PipelineError: The download failed (offline, HTTP error, no such file, cannot write); the
            message names the URL.
        DataError: The downloaded file fails its SHA-256 check; the message names the URL, the file
            and both checksums.
    """
    dest = Path(dest)
    if dest.is_dir():
        raise PipelineError(f"cannot download {url} to {dest}: a folder is there")
    make_folder(dest.parent)
    if urllib.parse.urlsplit(url).scheme == "file":
        downloader = _copy_file
    else:
        downloader = pooch.HTTPDownloader(chunk_size=CHUNK_BYTES, timeout=timeout)
    try:
        with _quiet_pooch():
            pooch.retrieve(url, f"sha256:{sha256_hex}", fname=dest.name, path=dest.parent, downloader=downloader)
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else "error"
        reason = error.response.reason if error.response is not None else error
        raise PipelineError(f"download of {url} failed: the server answered HTTP {status} {reason}") from None
    except requests.RequestException as error:  # before OSError: requests' errors are OSErrors too
        raise PipelineError(
            f"download of {url} failed; the machine may be offline ({_root_cause(error)}). "
            "Run the download again once the machine is online."
        ) from None
    except ValueError as error:  # pooch's checksum mismatch; its message names the file and both hashes
        raise DataError(f"download of {url} to {dest} refused: {error}") from None
    except OSError as error:  # not the network: a full disk, no write permission
        raise PipelineError(
            f"download of {url} failed: cannot write into {dest.parent}: {error.strerror or error}"
        ) from None
    return dest


def extract_tar(archive: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Extract a tar archive into `folder`, refusing members that would land outside it.

    Args:
        archive: A `.tar`, `.tar.gz`, ... file.
        folder: Destination folder, created if missing.

    Returns:
        `folder` as a `Path`.

    Raises:
        DataError: A member points outside `folder`, or the archive is unreadable.
        PipelineError: The files cannot be written.
    """
    if not hasattr(tarfile, "data_filter"):
        raise PipelineError("safe tar extraction needs Python 3.11.4 or newer (tarfile's 'data' filter)")
    folder = make_folder(folder)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter=lambda member, path: _checked_member(member, path, archive))
    except tarfile.TarError as error:
        raise DataError(f"{archive}: cannot be extracted safely: {error}") from None
    except OSError as error:
        raise PipelineError(f"cannot extract {archive} into {folder}: {error.strerror or error}") from None
    return folder


def _checked_member(member: tarfile.TarInfo, path: str, archive: str | os.PathLike) -> tarfile.TarInfo:
    # The 'data' filter catches these too; checking first gives a message that names the member.
    if member.name.startswith(("/", "\\")) or ".." in PurePosixPath(member.name.replace("\\", "/")).parts:
        raise DataError(f"{archive}: member {member.name!r} points outside the extraction folder; refused")
    return tarfile.data_filter(member, path)


def _copy_file(url: str, output_file: str, pooch_object: object) -> None:
    # pooch downloads only over the network; a file:// source is a mirror on disk.
    source = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
    if not source.is_file():
        raise PipelineError(f"download of {url} failed: no such file")
    shutil.copyfile(source, output_file)


def _root_cause(error: BaseException) -> str:
    # requests wraps urllib3 wraps the socket error; the innermost one says what happened.
    for _ in range(10):
        cause = error.__cause__ or error.__context__
        if cause is None:
            break
        error = cause
    return (error.strerror if isinstance(error, OSError) else None) or str(error)


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    # pooch logs every download to stderr at INFO; the downloaders print only the folder they filled.
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
