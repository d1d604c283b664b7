"""What every command is handed: the settings, one database connection, and the actor that the
events it appends will name (the operating-system user on this host, through "cli")."""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass

import asyncpg

from projections.domain.actor import Actor
from service.runtime.config import Settings


@dataclass(frozen=True, slots=True)
class Context:
    settings: Settings
    conn: asyncpg.Connection

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
