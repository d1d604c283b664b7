"""What every command is handed: the settings, one database connection, and the actor that the
events it appends will name (the operating-system user on this host, through "cli"); and how
commands reach the database (`open_pool`)."""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass

import asyncpg

from projections.domain.actor import Actor
from service.runtime.config import Settings
from service.runtime.database import connect_failure, create_pool, migrate, resolve_dsn
from service.runtime.keys import load_master_keys

# the commands that may create the embedded database; every other one needs it to exist
CREATING_COMMANDS = frozenset({"serve", "migrate"})


@dataclass(frozen=True, slots=True)
class Context:
    settings: Settings
    conn: asyncpg.Connection
    applied: tuple[str, ...] = ()  # the migrations this run applied (before the command)

    def actor(self, command: str) -> Actor:
        return cli_actor(command)


def cli_actor(command: str) -> Actor:
    """The actor of a CLI command: the operating-system user, on this host, through "cli"."""
    try:
        os_user = getpass.getuser()
    except (KeyError, OSError):
        os_user = str(os.getuid())
    return Actor(
        kind="cli", label="cli", scope="cli", os_user=os_user, host=socket.gethostname(),
        client=f"scimledger {command}", pid=os.getpid(),
    )


async def open_pool(settings: Settings, *, create: bool = False, max_size: int = 2) -> tuple[asyncpg.Pool, list[str]]:
    """A pool on the database in use, migrated: (pool, the migrations applied now). The embedded
    database is created only with `create`; a database that cannot be reached or refuses us is
    a SetupError with one line (service/runtime/database.py, connect_failure)."""
    dsn = resolve_dsn(settings, create=create)
    load_master_keys(settings)  # the subjects' data keys unwrap with it (docs/privacy.md)
    try:
        pool = await create_pool(dsn, min_size=1, max_size=max_size, connect_timeout_s=15.0)
    except Exception as e:
        refused = connect_failure(e, settings)
        if refused is None:
            raise
        raise refused from None
    try:
        async with pool.acquire() as conn:
            applied = await migrate(conn)
    except BaseException:
        await pool.close()
        raise
    return pool, applied
