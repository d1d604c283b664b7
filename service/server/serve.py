"""`scimledger serve`: bootstrap the database, then run one or several worker processes.

The embedded PostgreSQL (if used) is started here, before any event loop, by `resolve_dsn`, and
stopped by its atexit hook when this process exits. Workers are spawned processes that share the
port through SO_REUSEPORT; they never own the embedded server. SIGTERM stops accepting, lets
in-flight requests finish (aiohttp's graceful shutdown) and closes the pool.

A database that cannot be reached at start is retried (one `database.unavailable` line per try,
no traceback) until it answers or SIGTERM. Each worker serves through `GuardedAppRunner`, whose
connections time out slow request heads and clients that stop reading (docs/security.md).
"""

from __future__ import annotations

import asyncio
import errno
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from aiohttp import web

from service.app import tenancy
from service.http import metrics
from service.http.app import create_app
from service.runtime.config import LOOPBACK_NAMES, InvalidSetting, Settings, SetupError
from service.runtime.database import (
    connect_failure,
    create_pool,
    migrate,
    resolve_dsn,
    unavailable,
    where,
)
from service.runtime.logs import configure_logging

log = structlog.get_logger("scimledger.serve")
BOOTSTRAP_LOCK = 0x5C1_B007
DEFAULT_TENANT = "default"
SHUTDOWN_TIMEOUT_S = 25.0  # in-flight requests get this long after SIGTERM (Kubernetes allows 30)
BOOTSTRAP_RETRY_MAX_S = 10.0  # the longest pause between tries to reach the database at start


async def bootstrap(dsn: str, settings: Settings) -> str | None:
    """Migrate; on an empty database create the default tenant and a `scim` token.

    Returns the new secret (to be shown once) or None when the database already had tenants.
    """
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            applied = await migrate(conn)
            if applied:
                log.info("migrations.applied", names=applied)
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", BOOTSTRAP_LOCK)
                if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tenants)"):
                    return None
                tenant_id = await tenancy.create_tenant(conn, DEFAULT_TENANT)
                _, secret = await tenancy.issue_token(conn, tenant_id, "default", "scim")
                return secret
    finally:
        await pool.close()


class _Stopped(Exception):
    """SIGTERM or SIGINT while waiting for the database."""


def _bootstrap_when_reachable(dsn: str, settings: Settings) -> str | None:
    """`bootstrap`, retried while the database cannot be reached (1 s, doubling up to
    BOOTSTRAP_RETRY_MAX_S), one log line per try; SIGTERM or SIGINT meanwhile stops serve."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stopped

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        delay = 1.0
        while True:
            try:
                return asyncio.run(bootstrap(dsn, settings))
            except Exception as e:
                if not unavailable(e):
                    refused = connect_failure(e, settings)  # a wrong password, no such database
                    if refused is not None:
                        raise refused from None
                    raise
                log.warning("database.unavailable", during="bootstrap", error_type=type(e).__name__,
                            error=str(e)[:200], retry_in_s=delay)
            time.sleep(delay)
            delay = min(delay * 2, BOOTSTRAP_RETRY_MAX_S)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def warn_about_hosts(settings: Settings) -> None:
    """Bound beyond loopback without SCIMLEDGER_PUBLIC_URL, `Location` and `meta.location` come
    from the Host header; say so, and whether any Host is accepted."""
    if settings.public_url or settings.host.lower() in LOOPBACK_NAMES:
        return
    names = settings.allowed_host_names()
    log.warning(
        "serve.public_url_unset", host=settings.host,
        allowed_hosts=sorted(names) if names is not None else "any",
        detail="set SCIMLEDGER_PUBLIC_URL to the base URL the identity providers use"
        + ("" if names is not None else
           ", or SCIMLEDGER_ALLOWED_HOSTS to the names served: any Host is accepted and "
           "reflected into Location and meta.location"),
    )


ISSUE_HINT = f"scimledger token issue --tenant {DEFAULT_TENANT} --label okta"
TOKEN_FILE = "first-token"  # in the data dir, mode 0600, when stdout is not a terminal
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})


def local_url(settings: Settings) -> str:
    """The address that works from this machine (never the wildcard 0.0.0.0)."""
    host = settings.host
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/scim/v2"


def first_start_banner(settings: Settings, secret: str | None, token_file: Path | None) -> str:
    """What the first start prints on stdout: the SCIM base URL an IdP can use (the public URL;
    without one, what to set), and the secret (`secret`, for a terminal) or where it is."""
    if settings.public_url:
        scim_url = f"{settings.public_url.rstrip('/')}/scim/v2"
    else:
        scim_url = ("set SCIMLEDGER_PUBLIC_URL to the https address your IdP reaches; "
                    "the SCIM base URL is then that address + /scim/v2")
    if secret is not None:
        token = f"{secret}  (shown only this once)"
    elif token_file is not None:
        token = f"written to {token_file} (mode 0600): read it once, then delete the file"
    else:
        token = "could not be saved (see the log); issue one with the command below"
    lines = [
        "",
        f"scimledger is set up: tenant {DEFAULT_TENANT!r} with a scim token. For your identity provider "
        "(Okta or Entra ID):",
        f"  SCIM base URL:  {scim_url}",
        f"  From this host: {local_url(settings)}",
        f"  Secret token:   {token}",
        f"Issue more tokens (one per IdP connection): {ISSUE_HINT}",
        "",
    ]
    return "\n".join(lines)


def save_first_token(data_dir: Path, secret: str) -> Path | None:
    """The secret into `data_dir/first-token`, readable by this user only; None (logged) when
    that cannot be written (a read-only file system)."""
    path = data_dir.expanduser().resolve() / TOKEN_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(secret + "\n")
    except OSError as e:
        log.warning("serve.first_token_unsaved", path=str(path), error=e.strerror, fix=ISSUE_HINT)
        return None
    log.info("serve.first_token_saved", path=str(path))
    return path


def announce(settings: Settings, secret: str) -> None:
    """The first-start banner on stdout; the secret itself only when stdout is a terminal (in a
    container or under a supervisor stdout is a log stream: the secret goes to a 0600 file)."""
    if sys.stdout.isatty():
        text = first_start_banner(settings, secret, None)
    else:
        text = first_start_banner(settings, None, save_first_token(settings.data_dir, secret))
    print(text, flush=True)


class ListenRefused(SetupError):
    """The address to serve on cannot be used."""


def _listen_problem(host: str, port: int, error: OSError) -> str:
    if isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL:
        return (f"cannot listen on {host}:{port}: {host!r} is not an address of this machine; "
                "use --host 127.0.0.1 (this machine only) or --host 0.0.0.0 (every interface)")
    if error.errno == errno.EADDRINUSE:
        return (f"cannot listen on {host}:{port}: the address is already in use (another scimledger "
                "serve?); stop that process, or choose another port with --port or SCIMLEDGER_PORT")
    if error.errno == errno.EACCES:
        return (f"cannot listen on {host}:{port}: permission denied (ports below 1024 need privileges); "
                "use a port from 1024 up, such as --port 8080")
    return f"cannot listen on {host}:{port}: {error.strerror or error}"


def check_listen(host: str, port: int) -> None:
    """Bind host:port once and let go, so that a busy port or a wrong host is one line before
    the database is touched (the workers bind again; a race is caught by start_server)."""
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in addresses:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
    except OSError as e:
        raise ListenRefused(_listen_problem(host, port, e)) from None


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's connection protocol with the two watchdogs aiohttp lacks:

    - the header timeout: a request's head (request line and fields) must be complete within
      `header_timeout` of its first byte (for the first request: of the connection's opening),
      else the connection is closed (slowloris). Idle time between requests is bounded by
      keepalive_timeout, as aiohttp does;
    - the write timeout: a client that stops reading fills the transport's buffer and asyncio
      pauses writing; paused for `write_timeout` without draining, the connection is aborted, so
      the handler's next write fails, it gives up and its database connection goes back to the
      pool (`request.aborted`).

    It reads two attributes of aiohttp's RequestHandler: `_request_count` (one more per request
    head parsed) and `_waiter` (set while it waits for the next request); the tests of
    tests/tenancy/test_slow_clients.py fail if their meaning changes.
    """

    __slots__ = ("_header_limit", "_header_timer", "_write_limit", "_write_timer")

    def __init__(self, manager: web.Server, *, header_timeout: float, write_timeout: float,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_limit = header_timeout
        self._write_limit = write_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._waiter is not None and data:
            self._arm_header_timer()  # the first bytes of the next request's head
        if self._header_timer is None:
            super().data_received(data)
            return
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads and self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_limit > 0 and self._write_timer is None:
            self._write_timer = self._loop.call_later(self._write_limit, self._write_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        for timer in (self._header_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._write_timer = None
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_limit > 0:
            self._header_timer = self._loop.call_later(self._header_limit, self._head_overdue)

    def _peer(self) -> str | None:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return str(peer[0]) if peer else None

    def _head_overdue(self) -> None:
        self._header_timer = None
        log.info("connection.header_timeout", peer=self._peer(), limit_s=self._header_limit)
        self.force_close()

    def _write_stalled(self) -> None:
        self._write_timer = None
        log.info("connection.write_timeout", peer=self._peer(), limit_s=self._write_limit)
        if self.transport is not None:
            self.transport.abort()


class _GuardedServer(web.Server):
    """aiohttp's low-level server, making GuardedRequestHandlers."""

    def __init__(self, *args: Any, header_timeout: float, write_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = {"header_timeout": header_timeout, "write_timeout": write_timeout}

    def __call__(self) -> web.RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, **self._guard, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """web.AppRunner whose connections are GuardedRequestHandlers (the timeouts from Settings)."""

    __slots__ = ("_guard",)

    def __init__(self, app: web.Application, settings: Settings, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._guard = {"header_timeout": settings.header_timeout_s,
                       "write_timeout": settings.write_timeout_s}

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # starts the app, merges its handler_args
        return _GuardedServer(
            plain.request_handler, request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation, loop=asyncio.get_running_loop(),
            **self._guard, **plain._kwargs,
        )


async def start_server(app: web.Application, settings: Settings, *, reuse_port: bool = False) -> GuardedAppRunner:
    """Start `app` on settings.host:port, and on settings.metrics_port when set (the same app:
    service/http/metrics.py answers only /metrics there, and 404 for /metrics on the SCIM port);
    `await runner.cleanup()` stops it gracefully."""
    runner = GuardedAppRunner(app, settings, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    ports = [settings.port] + ([settings.metrics_port] if settings.metrics_port else [])
    try:
        for port in ports:
            try:
                await web.TCPSite(runner, settings.host, port, reuse_port=reuse_port or None).start()
            except OSError as e:
                raise ListenRefused(_listen_problem(settings.host, port, e)) from None
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def _serve_until_signalled(app: web.Application, settings: Settings, reuse_port: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = await start_server(app, settings, reuse_port=reuse_port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _run_worker(settings: Settings, dsn: str, reuse_port: bool, parent: int | None = None) -> None:
    configure_logging(settings.log_json)
    app = create_app(settings, dsn)
    if parent is not None:
        app.on_startup.append(lambda app: _watch_parent(app, parent))
    app.on_startup.append(_dump_tasks_on_sigusr1)
    try:
        asyncio.run(_serve_until_signalled(app, settings, reuse_port))
    except ListenRefused as e:
        if parent is None:
            raise  # the `serve` process itself: main prints the line
        log.error("serve.listen_refused", error=str(e))
        sys.exit(1)


async def _watch_parent(app: web.Application, parent: int) -> None:
    """A worker whose `serve` process is gone (SIGKILL) shuts itself down gracefully instead of
    serving on as an orphan."""

    async def watch() -> None:
        while True:
            await asyncio.sleep(1.0)
            if os.getppid() != parent:
                break
        log.warning("serve.parent_gone", parent=parent)
        os.kill(os.getpid(), signal.SIGTERM)

    task = asyncio.create_task(watch(), name="watch-parent")

    async def stop(app: web.Application) -> None:
        task.cancel()

    app.on_cleanup.append(stop)


async def _dump_tasks_on_sigusr1(app: web.Application) -> None:
    """`kill -USR1 <worker pid>` logs the stack of every asyncio task of that worker: what a
    stuck worker is waiting for, without stopping it."""

    def awaited(task: asyncio.Task[Any]) -> list[str]:
        frames: list[str] = []
        coro: Any = task.get_coro()
        while coro is not None:  # follow the chain of awaits down to where the task waits
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
            if frame is not None:
                frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        return frames

    def dump() -> None:
        for task in asyncio.all_tasks():
            log.warning("serve.task", name=task.get_name(), stack=awaited(task))

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)


def _multiprocess_metrics_dir(settings: Settings) -> tuple[str, bool]:
    """Where the workers keep their metric files: $PROMETHEUS_MULTIPROC_DIR if set, else a fresh
    temporary directory (removed at exit). Returns (path, created here)."""
    given = os.environ.get(metrics.MULTIPROC_ENV)
    if given:
        metrics.prepare_multiprocess_dir(given)
        return given, False
    return tempfile.mkdtemp(prefix="scimledger-metrics-"), True


def serve(settings: Settings, *, workers: int = 1) -> int:
    """Run the service until SIGTERM/SIGINT. One worker runs in this process; several are
    spawned processes sharing the port (SO_REUSEPORT). On SIGTERM every worker stops accepting,
    finishes its in-flight requests (up to SHUTDOWN_TIMEOUT_S), stops its followers and closes
    its pool. If a worker dies on its own, the others are stopped and serve exits 1, so the
    supervisor (systemd, Kubernetes) restarts the whole thing."""
    check_listen(settings.host, settings.port)
    if settings.metrics_port is not None:
        if settings.metrics_port == settings.port:
            raise InvalidSetting(f"SCIMLEDGER_METRICS_PORT must differ from the SCIM port ({settings.port})")
        check_listen(settings.host, settings.metrics_port)
    log.info("serve.database", database=where(settings))
    dsn = resolve_dsn(settings)
    try:
        secret = _bootstrap_when_reachable(dsn, settings)
    except _Stopped:
        log.info("serve.stopped", workers=0)
        return 0
    if secret:
        announce(settings, secret)
    warn_about_hosts(settings)
    log.info("serve.start", host=settings.host, port=settings.port, metrics_port=settings.metrics_port,
             workers=workers)
    if workers <= 1:
        _run_worker(settings, dsn, reuse_port=False)
        log.info("serve.stopped", workers=1)
        return 0

    metrics_dir, created = _multiprocess_metrics_dir(settings)
    os.environ[metrics.MULTIPROC_ENV] = metrics_dir  # inherited by the spawned workers
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)

    procs: list[multiprocessing.process.BaseProcess] = []
    # handlers first: a SIGTERM during start-up must not kill this process and orphan workers
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    ctx = multiprocessing.get_context("spawn")
    failed = False
    try:
        for i in range(workers):
            worker = ctx.Process(target=_run_worker, args=(settings, dsn, True, os.getpid()), name=f"worker-{i}")
            worker.start()
            procs.append(worker)
        running = list(procs)
        while running:
            multiprocessing.connection.wait([p.sentinel for p in running])
            for ended in [p for p in running if not p.is_alive()]:
                ended.join()
                running.remove(ended)
                metrics.mark_worker_dead(ended.pid or 0)
                if ended.exitcode not in (0, -signal.SIGTERM) or not stopping:
                    log.error("serve.worker_exited", worker=ended.name, exit_code=ended.exitcode)
                    failed = True
                    if not stopping:
                        forward(signal.SIGTERM, None)
    finally:
        if created:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("serve.stopped", workers=workers)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(serve(Settings.from_env()))
