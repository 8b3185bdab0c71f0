"""A real PostgreSQL server for the tests, in a temporary directory.

`initdb` then `pg_ctl start` on a free 127.0.0.1 port with its socket in the same directory;
`stop()` shuts it down (fast mode) and removes the directory. PostgreSQL refuses to run as root: then the directory is
given to the unprivileged `nobody` user and the server runs as it (`runuser`).
"""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from conftest import free_port


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for path in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True):
        return path
    raise AssertionError(f"{name} not found: install PostgreSQL (scripts/test.sh does, with apt-get)")


class PgServer:
    def __init__(self, durable: bool = False):
        """`durable`: fsync and synchronous commit on, as in production (benchmarks); the
        tests turn them off (they kill the exporter, never the server)."""
        self.durable = durable
        # Its own directory under /tmp: pytest's are root's (0700), which `nobody` cannot enter.
        self.dir = Path(tempfile.mkdtemp(prefix="iotchain-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.log = self.dir / "postgres.log"
        self.as_user = [] if os.geteuid() != 0 else ["runuser", "-u", "nobody", "--"]

    def url(self, db="postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def _run(self, *args, timeout=120):
        p = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}\n"
                                 + (self.log.read_text() if self.log.exists() else ""))
        return p

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.as_user:
            shutil.chown(self.dir, "nobody")
            os.chmod(self.dir, 0o700)
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=50"
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "start")
        return self

    def create_db(self, name: str) -> str:
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self):
        if self.data.exists():
            subprocess.run([*self.as_user, _pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                           capture_output=True, text=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)
