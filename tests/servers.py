"""Real Redis and PostgreSQL servers for tests: each on a free loopback port in a temp dir,
stopped by the PID they were started with."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tooling.local_cluster import free_port

REDIS = shutil.which("redis-server")
PG_BIN = next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)), None)
PG_MISSING = "Debian's postgresql is not installed (scripts/setup.sh installs it)"


def _wait_port(port: int, proc: subprocess.Popen | None, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError as exc:
            if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start on port {port}") from exc
            time.sleep(0.05)


@contextmanager
def redis_server(workdir: str) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc, "redis-server")
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


def _as_postgres(root: bool) -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if root else []


@contextmanager
def postgres_server() -> Iterator[tuple[str, str]]:
    """(URL, data dir) of a fresh cluster; initdb refuses root, so it runs as `postgres`."""
    root = os.geteuid() == 0
    base = tempfile.mkdtemp(prefix="tsr-pg-")
    data = os.path.join(base, "data")
    if root:
        shutil.chown(base, "postgres", "postgres")
    port = free_port()
    run = _as_postgres(root)
    subprocess.run(run + [f"{PG_BIN}/initdb", "-D", data, "-U", "tierserve", "--auth=trust",
                          "-E", "UTF8"], check=True, capture_output=True)
    subprocess.run(run + [f"{PG_BIN}/pg_ctl", "-D", data, "-l", os.path.join(base, "log"), "-w",
                          "-o", f"-p {port} -c listen_addresses=127.0.0.1 -c fsync=off "
                                f"-k {base}", "start"], check=True, capture_output=True)
    try:
        _wait_port(port, None, "postgres")
        yield f"postgresql://tierserve@127.0.0.1:{port}/postgres", data
    finally:
        subprocess.run(run + [f"{PG_BIN}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def database_url(request: Any, tmp_path: Path, *tables: str) -> str:
    """For a fixture parametrised ["sqlite", "postgresql"]: a fresh SQLite file, or the module's
    PostgreSQL server with `tables` emptied (one server per module: each test starts empty)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keys.db'}"
    from sqlalchemy import create_engine, inspect, text

    url, _ = request.getfixturevalue("pg")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            present = set(inspect(conn).get_table_names())
            for table in tables:
                if table in present:
                    conn.execute(text(f"DELETE FROM {table}"))
    finally:
        engine.dispose()
    return url
