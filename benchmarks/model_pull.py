"""Pull throughput from a local S3-compatible server and the cache-hit path.

    .venv/bin/python benchmarks/model_pull.py --mb 512 --runs 3

Starts moto's server (`moto_server`, its own process) on loopback, pushes a random "model"
of `--mb` MB in two shards, then pulls it `--runs` times into an empty cache (MB/s, as
`tierserve models pull` reports it: manifest GET to verified rename) and resolves the
cached copy 20 times in one process (the path a replica takes on a warm node: manifest
GET, then a stat).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tooling.local_cluster import free_port  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tsm-bench-"))
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.environ.update(AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="bench",
                          AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
        from app.models import s3
        from app.models.cache import ModelCache
        from app.models.sources import resolve

        model = work / "model"
        model.mkdir()
        half = args.mb * 1_000_000 // 2
        for i in (1, 2):
            (model / f"model-0000{i}-of-00002.safetensors").write_bytes(os.urandom(half))
        (model / "config.json").write_text('{"model_type": "bench"}\n')
        deadline = time.monotonic() + 30
        while True:
            try:
                s3.client().create_bucket(Bucket="bench")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        uri = "s3://bench/model"
        settings = s3.TransferSettings(max_workers=args.workers)
        t0 = time.monotonic()
        manifest = s3.push(model, uri, settings=settings)
        push_s = time.monotonic() - t0
        print(f"push: {manifest.total_bytes / 1e6:.0f} MB in {push_s:.2f}s "
              f"({manifest.total_bytes / 1e6 / push_s:.1f} MB/s, sha256 manifest included)")
        rates = []
        for run in range(args.runs):
            cache = ModelCache(work / f"cache{run}")
            got = resolve(uri, cache=cache, settings=settings)
            assert not got.cache_hit
            rates.append(got.mb_per_s)
            print(f"pull {run + 1}: {got.fetched_bytes / 1e6:.0f} MB in {got.seconds:.2f}s "
                  f"({got.mb_per_s:.1f} MB/s, verified)")
            if run < args.runs - 1:
                shutil.rmtree(cache.root)
        hits = []
        for _ in range(20):
            t = time.perf_counter()
            assert resolve(uri, cache=cache).cache_hit
            hits.append((time.perf_counter() - t) * 1000)
        print(f"pull median {statistics.median(rates):.1f} MB/s over {args.runs} runs, "
              f"{args.workers} workers; cache hit median {statistics.median(hits):.1f} ms "
              f"(min {min(hits):.1f}, max {max(hits):.1f}) over 20")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
