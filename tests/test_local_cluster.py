"""Local-stack helpers that decide what `tierserve down` may delete."""

from __future__ import annotations

import os
import subprocess
import sys
from multiprocessing import shared_memory
from pathlib import Path

from app.local_cluster import mapped_shm_segments


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
