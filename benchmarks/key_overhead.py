"""What virtual-key checks cost the data path: TTFT at concurrency 1, open API vs keyed.

    .venv/bin/python benchmarks/key_overhead.py --passes 3 --requests 32

Starts a private stack (free ports, its own empty keys database), measures streaming chat
TTFT with the API open, then creates a key in that database (which closes the API: a
database that ever held a key requires one) and measures again with the key. Same model
pinned (`tiny-fast`, no router hop), same prompt, 64 tokens; median of per-pass p50s.
Passes cannot interleave (the API cannot reopen), so machine drift between the two
phases is in the figure: read small differences as noise.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtests.bench.sequential import pass_args, sequential_p50s  # noqa: E402
from loadtests.bench.stream_client import chat_body  # noqa: E402
from tooling.local_cluster import start_private_stack, stop  # noqa: E402

PROMPT = " ".join(["tiered inference keeps the easy majority on the small model"] * 5)


def p50_ttft_ms(url: str, requests: int, headers: dict[str, str] | None) -> float:
    ttft_ms, _, _ = sequential_p50s(url, chat_body("tiny-fast", PROMPT, 64), requests,
                                    min_ok=requests, headers=headers)
    return ttft_ms


def main() -> int:
    args = pass_args(__doc__)
    temp_dir = tempfile.mkdtemp(prefix="tsk-bench-", dir="/tmp")
    stack = start_private_stack("local-cpu", temp_dir)
    try:
        url = f"{stack.base_url}/v1/chat/completions"
        p50_ttft_ms(url, 8, None)  # warm-up
        open_ms = [p50_ttft_ms(url, args.requests, None) for _ in range(args.passes)]
        from app.keys.models import KeyCreate
        from app.keys.store import KeyStore

        key = KeyStore(f"sqlite:///{temp_dir}/keys.db").create(KeyCreate(team="bench", name="overhead")).key
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the ingress re-reads "open?" within cache_ttl_s
            try:
                urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=10)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    break
            time.sleep(0.5)
        else:
            raise RuntimeError("the API did not close after a key was created")
        auth = {"authorization": f"Bearer {key}"}
        p50_ttft_ms(url, 8, auth)  # warm the key cache
        keyed_ms = [p50_ttft_ms(url, args.requests, auth) for _ in range(args.passes)]
    finally:
        stop(stack)
    open_med, keyed_med = statistics.median(open_ms), statistics.median(keyed_ms)
    print("| API | TTFT p50 per pass (ms) | median (ms) |\n|---|---|---|")
    print(f"| open (no key) | {', '.join(f'{x:.1f}' for x in open_ms)} | {open_med:.1f} |")
    print(f"| virtual key | {', '.join(f'{x:.1f}' for x in keyed_ms)} | {keyed_med:.1f} |")
    print(f"key checks add {keyed_med - open_med:+.1f} ms to TTFT p50 at concurrency 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
