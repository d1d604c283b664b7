"""Options that several command groups share, declared once so they read and behave alike."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from service.app.names import check_name

Command = Callable[[argparse.Namespace, Any], Awaitable[int]]


def tenant_option(parser: argparse.ArgumentParser) -> None:
    """`--tenant NAME`, required: the tenant a command acts on."""
    parser.add_argument("--tenant", required=True, metavar="NAME", help="the tenant's name")


def label_arg(raw: str) -> str:
    """A token or client label (service/app/names.py, check_name): trimmed, printable, bounded."""
    try:
        return check_name(raw, "the label")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def commands(sub: Any, name: str, help: str) -> Any:
    """A command group (`scimledger NAME ...`): its subcommands' parsers are added to the result."""
    return sub.add_parser(name, help=help).add_subparsers(dest=name, required=True)


def command(group: Any, name: str, *, help: str, run: Command, tenant: bool = False) -> argparse.ArgumentParser:
    """One subcommand of `group` that runs `run`; `tenant`: it takes `--tenant NAME`."""
    parser: argparse.ArgumentParser = group.add_parser(name, help=help)
    if tenant:
        tenant_option(parser)
    parser.set_defaults(run=run)
    return parser
