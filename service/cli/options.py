"""Options that several command groups share, declared once so they read and behave alike."""

from __future__ import annotations

import argparse

from service.app.names import check_name


def tenant_option(parser: argparse.ArgumentParser) -> None:
    """`--tenant NAME`, required: the tenant a command acts on."""
    parser.add_argument("--tenant", required=True, metavar="NAME", help="the tenant's name")


def label_arg(raw: str) -> str:
    """A token or client label (service/app/names.py, check_name): trimmed, printable, bounded."""
    try:
        return check_name(raw, "the label")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
