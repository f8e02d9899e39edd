"""A real PostgreSQL server for the tests: Debian's ``initdb``/``pg_ctl``/``postgres`` in a
temporary folder, on a free loopback port, started once per test session.

PostgreSQL refuses to run as root; as root the cluster belongs to the ``postgres`` user
(or ``nobody``) and is run through ``runuser``. Durability is switched off (fsync,
synchronous commit): a test cluster lives seconds. Each test gets its own schema (fast to
create, unlike a database) through the connection's ``search_path``.

Without the binaries the PostgreSQL tests skip, naming the package to install
(``apt-get install -y postgresql``), unless ``KFJUPYTER_REQUIRE_POSTGRES=1`` makes that a
failure (CI sets it where PostgreSQL is installed).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

BINARIES = ("initdb", "pg_ctl", "postgres")
INSTALL_HINT = "apt-get install -y postgresql (Debian/Ubuntu: initdb, pg_ctl and postgres)"


def find_bin_dir() -> Path | None:
    """A folder holding initdb, pg_ctl and postgres: PATH first, then /usr/lib/postgresql/*/bin."""
    found = [shutil.which(b) for b in BINARIES]
    if all(found):
        return Path(os.path.realpath(found[0])).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in Path(p).parent.name.split(".") if x.isdigit()]
    )
    for folder in reversed(candidates):
        if all((Path(folder) / b).exists() for b in BINARIES):
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="kfjupyter-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.user = "kf"
        self.runas: list[str] = []
        if os.geteuid() == 0:
            owner = "postgres"
            try:
                pwd.getpwnam(owner)
            except KeyError:
                owner = "nobody"
            entry = pwd.getpwnam(owner)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self.runas = ["runuser", "-u", owner, "--"]

    def _run(self, *args: str, timeout: float = 60) -> None:
        proc = subprocess.run(
            [*self.runas, *args], capture_output=True, text=True, timeout=timeout, cwd=self.dir
        )
        if proc.returncode != 0:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}")

    def start(self) -> "PostgresServer":
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.dir}",
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=400",
                "-c shared_buffers=32MB",
            ]
        )
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        return self

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=30)
            except Exception:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"

    def new_schema(self) -> str:
        """A fresh schema, and the SQLAlchemy URL whose connections use it."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return (
            f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/postgres"
            f"?options=-csearch_path%3D{name}"
        )


_lock = threading.Lock()
_server: PostgresServer | None = None
_failure: str | None = None


def shared_server() -> PostgresServer:
    """The session's server (started on first use, stopped when the test process exits)."""
    global _server, _failure
    with _lock:
        if _server is None and _failure is None:
            bin_dir = find_bin_dir()
            if bin_dir is None:
                _failure = f"PostgreSQL binaries not found; install them with: {INSTALL_HINT}"
            else:
                try:
                    import psycopg  # noqa: F401
                except ImportError:
                    _failure = "psycopg is not installed (pip install 'psycopg[binary]>=3.1'; it is in the test extra)"
                else:
                    server = PostgresServer(bin_dir)
                    atexit.register(server.stop)
                    try:
                        _server = server.start()
                    except Exception as exc:  # binaries there, server broken: a failure, not a skip
                        server.stop()
                        _failure = f"PostgreSQL did not start: {exc}"
                        pytest.fail(_failure)
        if _server is None:
            if _failure and _failure.startswith("PostgreSQL did not start"):
                pytest.fail(_failure)
            if os.environ.get("KFJUPYTER_REQUIRE_POSTGRES") == "1":
                pytest.fail(_failure or "PostgreSQL unavailable")
            pytest.skip(_failure or "PostgreSQL unavailable")
        return _server
