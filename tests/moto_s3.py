"""A real S3-compatible HTTP server on loopback for tests: moto's ThreadedMotoServer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tooling.local_cluster import free_port

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


class CuttingProxy:
    """A TCP proxy on loopback that drops its first `cuts` connections once they have sent
    `cut_after` bytes back to the client: a real network fault in the middle of a response."""

    def __init__(self, target_port: int, cut_after: int, cuts: int) -> None:
        import socket
        import threading

        self._target, self._cut_after = ("127.0.0.1", target_port), cut_after
        self._lock = threading.Lock()
        self.cuts_left, self.cut = cuts, 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self._target)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src, dst, downstream: bool) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if downstream and sent + len(data) > self._cut_after:
                    with self._lock:
                        cut = self.cuts_left > 0
                        if cut:
                            self.cuts_left -= 1
                            self.cut += 1
                    if cut:
                        dst.sendall(data[: self._cut_after - sent])
                        break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            import socket

            for s in (src, dst):  # shutdown first: the peer pump thread still holds the socket
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._server.close()
