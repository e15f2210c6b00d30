"""A real PostgreSQL server for the tests: initdb into a temp dir, a free port on 127.0.0.1, stopped at the end.

The server binaries come from the ``pgserver`` wheel (a dev dependency: PostgreSQL 16 built for manylinux,
installed by ``make setup`` from PyPI, so a fresh machine needs no root and no apt), else from a PostgreSQL on
PATH or Debian's /usr/lib/postgresql. PostgreSQL refuses to run as root, so under root (CI, this project's
machines) the server runs as ``nobody``, in a directory it owns. Nothing here relies on a server that is
already running, and ``stop``/``start`` on the same data directory and port let tests take the database away
and bring it back.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

_ROOT_FALLBACK_USER = "nobody"


def find_bindir() -> Path:
    """Where ``initdb``, ``pg_ctl`` and ``postgres`` are."""
    spec = importlib.util.find_spec("pgserver")  # finds the package without importing it
    candidates: list[Path] = []
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(location) / "pginstall" / "bin" for location in spec.submodule_search_locations]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise RuntimeError("no PostgreSQL server binaries: run `make setup` (installs the pgserver wheel)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One throwaway server. ``url(dbname)`` is what the app's ``database.url`` gets."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="securechat-pg-"))  # in /tmp: reachable by the server's user
        self.data = self.root / "data"
        self._demote: Callable[[], None] | None = None
        if os.geteuid() == 0:
            user = pwd.getpwnam(_ROOT_FALLBACK_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)

            def demote() -> None:
                os.setgroups([])  # drop root's supplementary groups too
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

            self._demote = demote
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.running = False

    def _run(self, tool: str, *args: str) -> None:
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}
        subprocess.run(
            [str(self.bindir / tool), *args],
            check=True,
            capture_output=True,
            env=env,
            cwd=self.root,
            preexec_fn=self._demote,  # setuid before exec: PostgreSQL refuses to run as root
            timeout=60,
        )

    def start(self) -> None:
        # -F: no fsync (a test server); -k: the socket in our directory, not /var/run.
        server_options = f"-p {self.port} -h 127.0.0.1 -k {self.root} -F -c max_connections=200"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-o", server_options, "start"
        )
        self.running = True

    def stop(self) -> None:
        """Immediate shutdown: clients see their connections cut, as in a crash of the database host."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.running = False

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A new empty database (tests do not see each other's rows); its URL."""
        import psycopg

        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
