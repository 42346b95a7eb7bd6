"""Local-stack helpers that decide what `tierserve down` may delete."""

from __future__ import annotations

import os
import subprocess
import sys
from multiprocessing import shared_memory
from pathlib import Path

from app.engine_shm import mapped_shm_segments


def test_mapped_segments_are_found_per_process() -> None:
    segment = shared_memory.SharedMemory(create=True, size=4096)
    try:
        path = Path("/dev/shm") / segment.name.lstrip("/")
        assert path in mapped_shm_segments([os.getpid()])
        assert path in mapped_shm_segments()  # anyone's
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert path not in mapped_shm_segments([other.pid])
        finally:
            other.kill()
            other.wait()
    finally:
        segment.close()
        segment.unlink()
    assert path not in mapped_shm_segments([os.getpid()])


def test_a_process_that_is_gone_maps_nothing() -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    assert mapped_shm_segments([int(done.stdout)]) == set()


def test_the_ledger_names_segments_of_an_engine_killed_outright(tmp_path, monkeypatch) -> None:
    """A replica records its engine; after a kill -9 the ledger still names the segment
    (so `down` removes it) and no longer names the dead process."""
    import psutil

    from app import engine_shm

    monkeypatch.setenv(engine_shm.LEDGER_ENV, str(tmp_path))
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from multiprocessing import shared_memory as s, resource_tracker as t; "
         "m = s.SharedMemory(create=True, size=4096); "
         # as under Ray: nothing unlinks the segment when its process dies
         "t.unregister(m._name, 'shared_memory'); print(m.name, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        path = Path("/dev/shm") / child.stdout.readline().strip().lstrip("/")
        engine_shm.record_engine("fast", [psutil.Process(child.pid)])
        procs, segments = engine_shm.read_ledger(tmp_path)
        assert path in segments and [p.pid for p in procs] == [child.pid]
        child.kill()
        child.wait()
        procs, segments = engine_shm.read_ledger(tmp_path)
        assert procs == [] and path in segments
        assert engine_shm.remove_orphaned_segments(segments) == [path]
        assert not path.exists()
    finally:
        child.kill()
        child.wait()
        path.unlink(missing_ok=True)


def test_a_missing_ray_auth_token_is_created_once(tmp_path, monkeypatch) -> None:
    from tooling.local_cluster import auth_token_path, engine_env, ensure_auth_token

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    env = {**engine_env(), "HOME": str(tmp_path), "RAY_AUTH_MODE": "token"}
    env.pop("RAY_AUTH_TOKEN", None)
    path = ensure_auth_token(env)
    assert path == tmp_path / ".ray" / "auth_token" == auth_token_path()
    token = path.read_text().strip()
    assert len(token) >= 32
    assert ensure_auth_token(env) == path and path.read_text().strip() == token  # kept, not replaced
    assert ensure_auth_token({**env, "RAY_AUTH_MODE": "disabled"}) is None


def test_the_stack_stops_in_ray_stops_order(tmp_path) -> None:
    """Raylets first, GCS last, the rest between (as `ray stop` does), whatever order the
    processes were found in."""
    import psutil

    from tooling.local_cluster import ray_stop_order, terminate

    started = []
    for name in ("gcs_server", "dashboard", "raylet", "agent"):
        (tmp_path / name).symlink_to("/bin/sleep")  # the process's name is the link's
        started.append(subprocess.Popen([str(tmp_path / name), "60"]))
    procs = [psutil.Process(p.pid) for p in started]
    try:
        groups = ray_stop_order(procs)
        assert [[p.name() for p in group] for group in groups] == [
            ["raylet"], ["dashboard", "agent"], ["gcs_server"]]
        for group in groups:
            terminate(group, grace_s=5)
        assert all(p.poll() is not None for p in started)
    finally:
        for p in started:
            p.kill()
            p.wait()


def test_terminate_kills_what_ignores_sigterm_after_the_grace() -> None:
    import time

    import psutil

    from tooling.local_cluster import terminate

    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, sys, time; "
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                 "print('ready', flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert stubborn.stdout.readline().strip() == "ready"
        proc = psutil.Process(stubborn.pid)
        start = time.monotonic()
        terminate([proc], grace_s=1)
        assert time.monotonic() - start >= 1 and not proc.is_running()
        assert proc.returncode == -9  # psutil reaped it: killed, not ended by the SIGTERM
    finally:
        stubborn.kill()
        stubborn.wait()
