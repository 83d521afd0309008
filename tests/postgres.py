"""A throw-away PostgreSQL cluster for tests: `initdb` in a temporary folder, a server listening on
a unix socket in that folder only (no TCP port), trust authentication, stopped and deleted at the
end. The binaries are looked up on PATH, then in /usr/lib/postgresql/*/bin (Debian's package).

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user (the
Debian package creates it) and its commands run as that user.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SERVER_USER = "postgres"
"""The cluster's owner when the tests run as root."""
_TOOLS = ("initdb", "pg_ctl")


def find_bin_dir() -> Path | None:
    """The folder holding `initdb` and `pg_ctl`: PATH first, then the newest Debian install."""
    on_path = [shutil.which(tool) for tool in _TOOLS]
    if all(on_path):
        return Path(on_path[0]).resolve().parent  # type: ignore[arg-type]

    def version(folder: str) -> list[int]:
        return [int(x) for x in Path(folder).parent.name.split(".") if x.isdigit()]

    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if all((Path(folder) / tool).is_file() for tool in _TOOLS):
            return Path(folder)
    return None


class Cluster:
    """A running throw-away cluster; `database()` hands out empty databases on it."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self._as: dict[str, Any] = {}  # subprocess arguments that run a command as the owner
        if os.geteuid() == 0:
            import pwd

            try:
                owner = pwd.getpwnam(SERVER_USER)
            except KeyError as e:
                raise RuntimeError(
                    f"running as root but there is no {SERVER_USER!r} user to own the test cluster "
                    "(PostgreSQL refuses to run as root); install the postgresql package"
                ) from e
            self._as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
            self.user = SERVER_USER
        else:
            import getpass

            self.user = getpass.getuser()
        self.root = Path(tempfile.mkdtemp(prefix="agentmeta-pg-"))
        if self._as:
            os.chown(self.root, self._as["user"], self._as["group"])
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._names = itertools.count()

    def _run(self, *args: str) -> None:
        cmd = list(args)
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, check=False, cwd=self.root, **self._as
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}\n{log}")

    def start(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        # A socket in our own folder and no TCP listener: nothing to collide with other servers.
        options = f"-c listen_addresses='' -c unix_socket_directories={self.root} -c fsync=off"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@/{database}?host={self.root}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE) on the `postgres` database."""
        import psycopg

        with psycopg.connect(host=str(self.root), user=self.user, dbname="postgres", autocommit=True) as conn:
            conn.execute(sql)

    @contextmanager
    def database(self) -> Iterator[str]:
        """A new empty database for one test; dropped after it (open connections are cut)."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name}")
        try:
            yield self.url(name)
        finally:
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def cluster() -> Iterator[Cluster | None]:
    """A started cluster, or None if no PostgreSQL binaries are installed."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        yield None
        return
    c = Cluster(bin_dir)
    try:
        c.start()
        yield c
    finally:
        c.stop()
