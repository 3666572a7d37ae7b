"""Throwaway services for the scale-out tests and the fault harness: PostgreSQL and `mlflow server`.

Both start from the installed binaries in a folder of their own, on a free port, and are stopped
(and their folder kept or removed by the caller) when the `with` block ends.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port nothing listens on now.

    Returns:
        The port number.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_binary(name: str) -> str | None:
    """The path of a PostgreSQL server binary (`initdb`, `pg_ctl`), or None when it is not installed.

    Args:
        name: The binary's name.

    Returns:
        Its path on `PATH`, else the newest under `/usr/lib/postgresql/*/bin/`, else None.
    """
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@contextlib.contextmanager
def postgres(base: Path, databases: tuple[str, ...] = ("optuna", "mlflow")) -> Iterator[str]:
    """A PostgreSQL server with its data in `base`, on a free port, with `databases` created.

    As root, the server runs as the `postgres` user (initdb refuses root).

    Args:
        base: An empty folder for the server's data, socket and log (`server.log`).
        databases: Databases to create. Default: `("optuna", "mlflow")`.

    Yields:
        The server's base URL, `postgresql://postgres@127.0.0.1:<port>` (append `/<database>`).

    Raises:
        FileNotFoundError: The server binaries are not installed (`apt-get install -y postgresql`).
    """
    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    if not (initdb and pg_ctl):
        raise FileNotFoundError("PostgreSQL server binaries not installed (apt-get install -y postgresql)")
    base.mkdir(parents=True, exist_ok=True)
    as_user = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(base, 0o755)
        shutil.chown(base, "postgres", "postgres")
    port = free_port()
    data = base / "data"
    subprocess.run(
        [*as_user, initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"], check=True, capture_output=True
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200"
    subprocess.run(
        [*as_user, pg_ctl, "-D", data, "-l", base / "server.log", "-o", options, "-w", "start"],
        check=True,
        capture_output=True,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}"
    try:
        import psycopg

        with psycopg.connect(f"{url}/postgres", autocommit=True) as connection:
            for database in databases:
                connection.execute(f"CREATE DATABASE {database}")
        yield url
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True)


def healthy(url: str) -> bool:
    """Whether `url` answers HTTP 200 within 2 s.

    Args:
        url: e.g. `http://127.0.0.1:5000/health`.

    Returns:
        True on a 200 answer.
    """
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class MlflowServer:
    """An `mlflow server` process that can be stopped and started again on the same port and stores.

    Args:
        backend_uri: `--backend-store-uri`, e.g. `sqlite:///server.db`.
        artifacts: `--artifacts-destination` folder.
        log: File the server's output is appended to.
        port: The port. Default: a free one.
    """

    def __init__(self, backend_uri: str, artifacts: Path, log: Path, port: int | None = None) -> None:
        self.backend_uri, self.artifacts, self.log = backend_uri, artifacts, log
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        """Start the server and wait until `/health` answers.

        Args:
            timeout: Seconds to wait. Default: `120`.

        Raises:
            RuntimeError: The server exited or did not answer in time.
        """
        command = [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            self.backend_uri,
            "--artifacts-destination",
            str(self.artifacts),
        ]
        env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
        with open(self.log, "a") as log:
            # Its own process group: stop() ends the server and the workers it forked.
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if healthy(f"{self.url}/health"):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server on port {self.port} did not start; see {self.log}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server's process group with `sig` and wait for it.

        Args:
            sig: The signal. Default: `SIGTERM`.
        """
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None
