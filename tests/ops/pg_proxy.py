"""A TCP proxy in front of the test PostgreSQL that can be cut and restored: an outage of a real
database without stopping the server every other test shares. `cut()` closes every proxied
connection and refuses new ones (connection refused, as for a stopped server); `restore()`
listens again on the same port.
"""

from __future__ import annotations

import glob
import os
import socket
import threading
from urllib.parse import parse_qs, urlsplit, urlunsplit

from tests.support import free_port


def _target(dsn: str) -> tuple[int, str | tuple[str, int]]:
    """The address family and address of the server a DSN names (a unix socket or TCP)."""
    parts = urlsplit(dsn)
    socket_dir = parse_qs(parts.query).get("host", [None])[0] or (
        parts.hostname if parts.hostname and parts.hostname.startswith("/") else None
    )
    if socket_dir:
        port = parts.port or 5432
        path = os.path.join(socket_dir, f".s.PGSQL.{port}")
        if not os.path.exists(path):
            found = [p for p in glob.glob(os.path.join(socket_dir, ".s.PGSQL.*")) if not p.endswith(".lock")]
            path = found[0]
        return socket.AF_UNIX, path
    return socket.AF_INET, (parts.hostname or "127.0.0.1", parts.port or 5432)


class PostgresProxy:
    def __init__(self, dsn: str) -> None:
        self._family, self._address = _target(dsn)
        parts = urlsplit(dsn)
        self.port = free_port()
        user = parts.username or "postgres"
        auth = f"{user}:{parts.password}@" if parts.password else f"{user}@"
        self.dsn = urlunsplit(("postgresql", f"{auth}127.0.0.1:{self.port}", parts.path, "", ""))
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None

    def __enter__(self) -> PostgresProxy:
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self._accepting = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._accepting.start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._accepting is not None:
            self._accepting.join(5)
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.socket(self._family, socket.SOCK_STREAM)
            try:
                upstream.connect(self._address)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
