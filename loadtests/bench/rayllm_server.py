"""`ray.serve.llm`'s `build_openai_app` with its defaults, on a Ray cluster of its own.

The overhead benchmark starts this as a subprocess, so Ray Serve LLM gets Ray
Serve's default data path (Python proxy) while Tierserve's cluster runs with the
switches in configs/server.yaml. It writes `{"deploy_s": ...}` to --ready-file once
the app answers, and shuts its cluster down on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="local-cpu")
    parser.add_argument("--tier", default="fast")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--ready-file", required=True)
    args = parser.parse_args()

    import ray
    from ray import serve
    from ray.serve.llm import build_openai_app

    from app.config.loader import load_config
    from loadtests.bench import targets as tg
    from tooling.local_cluster import free_port

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    Path(args.temp_dir).mkdir(parents=True, exist_ok=True)
    # 8 logical CPUs: each LLM replica's placement group asks for 2 (shared/CPU-VLLM.md).
    ray.init(address="local", num_cpus=8, include_dashboard=False, _temp_dir=args.temp_dir,
             _metrics_export_port=free_port(), log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        tier = load_config(args.profile).tier(args.tier)
        start = time.monotonic()
        serve.run(build_openai_app({"llm_configs": [tg.rayllm_config(tier)]}), name="rayllm",
                  route_prefix="/")
        tg.wait_http(f"http://127.0.0.1:{args.port}/v1/models", 600)
        Path(args.ready_file).write_text(json.dumps({"deploy_s": time.monotonic() - start}))
        stop.wait()
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
