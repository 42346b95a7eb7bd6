"""A real S3-compatible HTTP server on loopback for tests: moto's ThreadedMotoServer."""

from __future__ import annotations

import contextlib
from typing import Iterator

from app.local_cluster import free_port

# Dummy credentials: moto accepts any, but boto3 still signs every request with them.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "tierserve-test", "AWS_SECRET_ACCESS_KEY": "tierserve-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def moto_s3() -> Iterator[dict[str, str]]:
    """Start the server on 127.0.0.1 and a free port; yield the env a client needs."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield {"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}", **CREDENTIALS}
    finally:
        server.stop()
