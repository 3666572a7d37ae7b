"""The dataset downloaders against a local HTTP server: caching, checksums, offline errors, safe extraction."""

import errno
import hashlib
import http.server
import io
import json
import math
import re
import struct
import tarfile
import threading
import time
import wave
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipelines import downloads
from pipelines.anomaly_detection import download as nab_download
from pipelines.anomaly_detection.data import load_nab
from pipelines.errors import DataError, PipelineError
from pipelines.speech_commands import download as speech_download
from pipelines.speech_commands.data import list_records, noise_files, read_wav

UNREACHABLE = "http://127.0.0.1:9/x"  # the discard port: nothing listens, the connection is refused


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """A proxy from the environment must not stand between the tests and 127.0.0.1."""
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def server(tmp_path):
    """A file server on 127.0.0.1 in a thread: `root` is served at `url`; `requests` lists each path asked for."""
    root = tmp_path / "served"
    root.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            if self.path == "/truncated":  # promises more than it sends, then hangs up
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b"x" * 10)
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_port}", requests=requests)
    httpd.shutdown()
    httpd.server_close()


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTM_PIPELINES_CACHE", str(tmp_path))
    assert downloads.cache_dir("nab") == tmp_path / "nab"
    monkeypatch.delenv("LSTM_PIPELINES_CACHE")
    assert downloads.cache_dir("nab") == Path.home() / ".cache" / "lstm-pipelines" / "nab"


def test_fetch_verifies_then_serves_from_the_cache(server, tmp_path):
    body = b"x" * (3 * downloads.CHUNK_BYTES + 5)  # several chunks
    (server.root / "file.bin").write_bytes(body)
    dest = tmp_path / "cache" / "file.bin"
    assert downloads.fetch(f"{server.url}/file.bin", dest, _sha256(body)) == dest
    assert dest.read_bytes() == body
    assert downloads.sha256(dest) == _sha256(body)
    assert downloads.fetch(f"{server.url}/file.bin", dest, _sha256(body)) == dest
    assert server.requests == ["/file.bin"]


def test_fetch_replaces_a_cached_file_that_fails_its_checksum(server, tmp_path):
    (server.root / "file.bin").write_bytes(b"good")
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"stale")
    downloads.fetch(f"{server.url}/file.bin", dest, _sha256(b"good"))
    assert dest.read_bytes() == b"good"


def test_corrupted_download_is_refused_and_leaves_no_file(server, tmp_path):
    (server.root / "file.bin").write_bytes(b"tampered")
    dest = tmp_path / "cache" / "file.bin"
    url = f"{server.url}/file.bin"
    expected = _sha256(b"original")
    with pytest.raises(DataError) as caught:
        downloads.fetch(url, dest, expected)
    message = str(caught.value)
    assert url in message and str(dest) in message
    assert expected in message and _sha256(b"tampered") in message
    assert list(dest.parent.iterdir()) == []


def test_a_dropped_connection_leaves_no_file(server, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(PipelineError, match=r"/truncated failed; the machine may be offline"):
        downloads.fetch(f"{server.url}/truncated", cache / "file.bin", "0" * 64)
    assert list(cache.iterdir()) == []


def test_a_cached_file_is_replaced_only_by_a_verified_one(server, tmp_path):
    (server.root / "file.bin").write_bytes(b"tampered")
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"stale")
    with pytest.raises(DataError):
        downloads.fetch(f"{server.url}/file.bin", dest, _sha256(b"good"))
    assert dest.read_bytes() == b"stale"


def test_a_folder_where_the_download_goes_is_a_clear_error_before_downloading(server, tmp_path):
    (server.root / "file.bin").write_bytes(b"good")
    cache = tmp_path / "cache"
    (cache / "file.bin").mkdir(parents=True)
    with pytest.raises(PipelineError, match=r"cannot download .*/file.bin to .*file.bin: a folder is there"):
        downloads.fetch(f"{server.url}/file.bin", cache / "file.bin", _sha256(b"good"))
    assert server.requests == [] and [p.name for p in cache.iterdir()] == ["file.bin"]


def test_a_missing_file_source_is_not_called_offline(tmp_path):
    source = (tmp_path / "mirror" / "data.csv").as_uri()
    with pytest.raises(PipelineError, match=rf"download of {re.escape(source)} failed: no such file$"):
        downloads.fetch(source, tmp_path / "cache" / "data.csv", "0" * 64)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_file_source_is_copied_and_verified(tmp_path):
    source = tmp_path / "mirror" / "data.csv"
    source.parent.mkdir()
    source.write_bytes(b"a,b\n1,2\n")
    dest = tmp_path / "cache" / "data.csv"
    assert downloads.fetch(source.as_uri(), dest, _sha256(b"a,b\n1,2\n")) == dest
    assert dest.read_bytes() == b"a,b\n1,2\n"


def test_a_full_disk_is_not_called_offline(tmp_path, monkeypatch):
    source = tmp_path / "data.csv"
    source.write_bytes(b"data")

    def full_disk(source, target):
        Path(target).write_bytes(b"da")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(downloads.shutil, "copyfile", full_disk)
    cache = tmp_path / "cache"
    with pytest.raises(PipelineError, match=rf"cannot write into {re.escape(str(cache))}: No space left on device$"):
        downloads.fetch(source.as_uri(), cache / "data.csv", _sha256(b"data"))
    assert list(cache.iterdir()) == []


def test_unreachable_url_says_offline_quickly(tmp_path):
    started = time.monotonic()
    with pytest.raises(PipelineError, match=rf"{re.escape(UNREACHABLE)}.*offline.*Run the download again"):
        downloads.fetch(UNREACHABLE, tmp_path / "x", "0" * 64, timeout=5)
    assert time.monotonic() - started < 5
    assert list(tmp_path.iterdir()) == []


def test_missing_file_names_the_http_status(server, tmp_path):
    with pytest.raises(PipelineError, match=r"/missing failed: the server answered HTTP 404 File not found$"):
        downloads.fetch(f"{server.url}/missing", tmp_path / "x", "0" * 64)
    assert list(tmp_path.glob("x*")) == []


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/tmp/evil"])
def test_extract_tar_refuses_members_outside_the_folder(tmp_path, name):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DataError, match="evil"):
        downloads.extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def _write_wav(path, frequency, rate=16000, seconds=0.1):
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = (round(8000 * math.sin(2 * math.pi * frequency * i / rate)) for i in range(int(rate * seconds)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))


def _speech_commands_archive(folder, archive):
    """A tiny Speech Commands tarball: 2 words x 2 clips, the split lists and a noise recording."""
    for index, word in enumerate(("yes", "no")):
        for speaker in ("aaaa0000", "bbbb1111"):
            _write_wav(folder / word / f"{speaker}_nohash_0.wav", 300 * (index + 1))
    _write_wav(folder / "_background_noise_" / "white_noise.wav", 50, seconds=0.5)
    (folder / "validation_list.txt").write_text("yes/bbbb1111_nohash_0.wav\n")
    (folder / "testing_list.txt").write_text("no/bbbb1111_nohash_0.wav\n")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=".")  # the real archive's members read `./yes/...`
    return archive


def test_speech_commands_download_end_to_end(server, tmp_path, monkeypatch, capsys):
    archive = _speech_commands_archive(tmp_path / "tree", server.root / "speech_commands_v0.02.tar.gz")
    url = f"{server.url}/{archive.name}"
    monkeypatch.setitem(speech_download.VERSIONS, "0.02", (url, downloads.sha256(archive)))
    cache = tmp_path / "cache"
    stale = cache / "speech_commands_v0.02" / "half_extracted.wav"  # an earlier run cut short
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")

    assert speech_download.main(["--folder", str(cache)]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert folder == cache / "speech_commands_v0.02"
    assert (folder / speech_download.MARKER).is_file() and not stale.exists()
    layout, records = list_records(folder, "speech_commands")
    assert layout == "speech_commands"
    assert sorted(records["word"]) == ["no", "no", "yes", "yes"]
    assert records["split"].value_counts().to_dict() == {"train": 2, "val": 1, "test": 1}
    assert len(noise_files(folder)) == 1
    rate, samples = read_wav(folder / "yes" / "aaaa0000_nohash_0.wav")
    assert rate == 16000 and len(samples) == 1600

    assert speech_download.download_speech_commands(folder=cache) == folder
    assert server.requests == [f"/{archive.name}"]


def test_speech_commands_cli_reports_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(speech_download.VERSIONS, "0.02", (UNREACHABLE, "0" * 64))
    assert speech_download.main(["--folder", str(tmp_path)]) == 2
    assert re.match(r"error: .*offline", capsys.readouterr().err)


def _nab_tree(root):
    """Two tiny series in the NAB layout, one with a labelled window."""
    rows = "".join(f"2015-01-01 00:{minute:02d}:00,{minute % 7}\n" for minute in range(30))
    for key in ("realKnownCause/machine.csv", "artificialNoAnomaly/flat.csv"):
        (root / "data" / key).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / key).write_text("timestamp,value\n" + rows)
    (root / "labels").mkdir()
    windows = {"realKnownCause/machine.csv": [["2015-01-01 00:10:00", "2015-01-01 00:14:00"]]}
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (root / "labels" / "combined_labels.json").write_text(json.dumps({"realKnownCause/machine.csv": []}))
    return root


def test_nab_download_end_to_end(server, tmp_path, monkeypatch, capsys):
    manifest = nab_download.build_manifest(_nab_tree(server.root))
    assert sorted(manifest) == [
        "data/artificialNoAnomaly/flat.csv",
        "data/realKnownCause/machine.csv",
        "labels/combined_labels.json",
        "labels/combined_windows.json",
    ]
    nab_download.write_manifest(manifest, tmp_path / "manifest.json")
    monkeypatch.setattr(nab_download, "MANIFEST_FILE", tmp_path / "manifest.json")
    monkeypatch.setattr(nab_download, "BASE_URL", server.url)

    assert nab_download.main(["--folder", str(tmp_path / "nab")]) == 0
    folder = Path(capsys.readouterr().out.strip())
    series = {item.name: item for item in load_nab(folder)}
    assert sorted(series) == ["artificialNoAnomaly/flat.csv", "realKnownCause/machine.csv"]
    assert series["realKnownCause/machine.csv"].windows == [(10, 14)]

    nab_download.download_nab(folder)
    assert len(server.requests) == 4


def test_shipped_nab_manifest_lists_the_corpus():
    manifest = nab_download.load_manifest()
    assert sum(path.startswith("data/") and path.endswith(".csv") for path in manifest) == 58
    assert set(nab_download.LABEL_FILES) < set(manifest)
    assert len(manifest) == 60
    assert all(re.fullmatch(r"[0-9a-f]{64}", checksum) for checksum in manifest.values())


@pytest.mark.parametrize("downloader", [nab_download, speech_download], ids=["nab", "speech_commands"])
def test_a_download_folder_under_a_file_is_a_clear_error(downloader, tmp_path, capsys):
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    assert downloader.main(["--folder", str(blocker / "data")]) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot create the download folder {blocker / 'data'}")
