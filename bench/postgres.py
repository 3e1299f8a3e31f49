"""A throwaway PostgreSQL cluster of Debian's packages, for the tests and the corrections bench.

`PostgresCluster` runs `initdb` and `pg_ctl` from Debian's `postgresql` package (which
`scripts/install-system-packages` installs) in a fresh temporary directory, on a free port
of 127.0.0.1, and removes it all on `stop`. PostgreSQL refuses to run as root, so as root
its programs run as the `postgres` user that Debian's package creates.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.server_process import free_port

POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
USER = "digits"
DATABASE = "digits"


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's programs."""
    found = sorted(Path("/").glob(POSTGRES_BIN_GLOB.lstrip("/")), key=_version)
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed: run scripts/install-system-packages (Debian's postgresql)"
        )
    return found[-1]


def _version(bin_dir: Path) -> int:
    name = bin_dir.parent.name
    return int(name) if name.isdigit() else 0


class PostgresCluster:
    """A PostgreSQL server of its own, with one database that `url` names."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.port = free_port()
        # Not pytest's tmp_path: it lies under a folder only root may enter.
        self.root = Path(tempfile.mkdtemp(prefix="digits-postgres-"))
        self.data = self.root / "data"
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        """The database's URL, as `--database-url` takes it."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> PostgresCluster:
        """Create the cluster and its database, and start it."""
        self._run("initdb", "-D", str(self.data), "-U", USER, "-A", "trust", "--no-sync",
                  "-E", "UTF8", "--locale", "C")
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
            " -c max_connections=200 -c fsync=on"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.root / "server.log"), "-w", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE)
        return self

    def create_database(self, name: str) -> str:
        """Create one more database in the cluster; returns its URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name)
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"

    def stop_server(self) -> None:
        """Stop the server at once, as a crash would, keeping its files."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def start_server(self) -> None:
        """Start the server of an existing cluster again, on the same port."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.root / "server.log"), "-w", "start")

    def stop(self) -> None:
        """Stop the server and remove every file of the cluster."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        """The server's log, for a failing test's message."""
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _run(self, program: str, *arguments: str) -> None:
        command = [*self.as_owner, str(self.bin / program), *arguments]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stderr}\n{self.log()}"
            )

