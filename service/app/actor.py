"""Who made a change: the metadata stored with every event (the audit trail's "who")."""

from __future__ import annotations

import getpass
import os
import socket
from typing import Any

from aiohttp import web

from service.http.keys import PRINCIPAL, REQUEST_ID


def request_metadata(request: web.Request) -> dict[str, Any]:
    """The actor of an HTTP request: token id and label, scope, IdP client, address, request id."""
    principal = request[PRINCIPAL]
    return {
        "actor": {
            "kind": "token",
            "tokenId": str(principal.token_id),
            "label": principal.label,
            "scope": principal.scope,
            "client": request.headers.get("User-Agent", "")[:512],
            "ip": request.remote,
            "requestId": request[REQUEST_ID],
        }
    }


def cli_metadata(command: str) -> dict[str, Any]:
    """The actor of a CLI command: the operating-system user, on this host, through "cli"."""
    try:
        os_user = getpass.getuser()
    except (KeyError, OSError):
        os_user = str(os.getuid())
    return {
        "actor": {
            "kind": "cli",
            "label": "cli",
            "scope": "cli",
            "osUser": os_user,
            "host": socket.gethostname(),
            "client": f"scimledger {command}",
            "pid": os.getpid(),
        }
    }
