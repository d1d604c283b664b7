"""Options that several command groups share, declared once so they read and behave alike."""

from __future__ import annotations

import argparse


def tenant_option(parser: argparse.ArgumentParser) -> None:
    """`--tenant NAME`, required: the tenant a command acts on."""
    parser.add_argument("--tenant", required=True, metavar="NAME", help="the tenant's name")
