"""Cached, checksum-verified downloads for the optional dataset downloaders (standard library only).

Nothing in the pipelines or the tests needs the network: these helpers serve the `download` modules
a user runs by hand to fetch a real dataset into the cache.
"""

import hashlib
import http.client
import os
import ssl
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from pipelines.errors import DataError, PipelineError

CACHE_ENV = "LSTM_PIPELINES_CACHE"
CHUNK_BYTES = 1 << 20
# What a dropped or refused connection raises; a full disk (a plain OSError) is not one of them.
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ssl.SSLError)


def cache_dir(name):
    """The cache folder of one dataset.

    Args:
        name: Folder name, e.g. `"stocks"`.

    Returns:
        `$LSTM_PIPELINES_CACHE/<name>`, default `~/.cache/lstm-pipelines/<name>`.
    """
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lstm-pipelines"
    return Path(root) / name


def make_folder(folder):
    """Create `folder` and its parents; a `PipelineError` naming it when that is impossible."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PipelineError(f"cannot create the download folder {folder}: {error.strerror or error}") from None
    return folder


def sha256(path):
    """Hex SHA-256 of a file, read in chunks (archives can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url, dest, sha256_hex, timeout=30):
    """Download `url` to `dest` unless an intact copy is already there.

    The body goes to `dest.part` and is renamed to `dest` only once its SHA-256 matches, so `dest`
    is never a partial or unverified file.

    Args:
        url: What to download.
        dest: Where the verified file goes.
        sha256_hex: Expected hex SHA-256 of the file.
        timeout: Seconds to wait on the connection. Default: `30`.

    Returns:
        `dest` as a `Path`.
    """
    dest = Path(dest)
    if dest.is_file() and sha256(dest) == sha256_hex:
        return dest
    if dest.is_dir():
        raise PipelineError(f"cannot download {url} to {dest}: a folder is there")
    make_folder(dest.parent)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
    except urllib.error.HTTPError as error:
        part.unlink(missing_ok=True)
        raise PipelineError(f"download of {url} failed: the server answered HTTP {error.code} {error.reason}") from None
    except NETWORK_ERRORS as error:
        part.unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or error
        if isinstance(reason, FileNotFoundError):  # a file:// source (a mirror on disk) that is not there
            raise PipelineError(f"download of {url} failed: no such file") from None
        raise PipelineError(f"download of {url} failed; the machine may be offline ({reason})") from None
    except OSError as error:  # not the network: a full disk, no write permission
        part.unlink(missing_ok=True)
        raise PipelineError(f"download of {url} failed: cannot write {part}: {error.strerror or error}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    actual = sha256(part)
    if actual != sha256_hex:
        part.unlink()
        raise DataError(f"{url}: downloaded file fails its SHA-256 check: expected {sha256_hex}, got {actual}")
    os.replace(part, dest)
    return dest


def extract_tar(archive, folder):
    """Extract a tar archive into `folder`, refusing members that would land outside it.

    Args:
        archive: A `.tar`, `.tar.gz`, ... file.
        folder: Destination folder, created if missing.

    Returns:
        `folder` as a `Path`.
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


def _checked_member(member, path, archive):
    # The 'data' filter catches these too; checking first gives a message that names the member.
    if member.name.startswith(("/", "\\")) or ".." in PurePosixPath(member.name.replace("\\", "/")).parts:
        raise DataError(f"{archive}: member {member.name!r} points outside the extraction folder; refused")
    return tarfile.data_filter(member, path)
