"""Safe exports and terminals (issue 12 item 6): values that clients choose (a userName, a
User-Agent) cannot run as a spreadsheet formula in the CSV export (OWASP "CSV Injection"), cannot
start a row of their own in it (RFC 4180 quoting), and cannot drive a terminal (ANSI escapes,
newlines) in the CLI's tables. Through the real HTTP API and the real `scimledger` command.
"""

from __future__ import annotations

import asyncio
import csv
import io

import asyncpg
from aiohttp.test_utils import TestClient

from service.app.audit import CSV_COLUMNS, csv_cell
from service.cli.output import printable
from tests.conftest import make_tenant
from tests.support import caught_up, cli, env_for, new_user, token_headers

FORMULA_CLIENT = "=cmd|' /C calc'!A0"
# userName -> the cell the CSV export must hold for it
NAMES = {
    "=cmd|' /C calc'!A0": "'=cmd|' /C calc'!A0",
    "+SUM(1+1)": "'+SUM(1+1)",
    "-2+3": "'-2+3",
    "@SUM(A1:A2)": "'@SUM(A1:A2)",
    "\tx@example.com": "'\tx@example.com",
    "\rcr@example.com": "'\rcr@example.com",
    "a\r9,2024-01-01T00:00:00.000Z,user.deleted": "a\r9,2024-01-01T00:00:00.000Z,user.deleted",
    'quote"and,comma': 'quote"and,comma',
    "plain@example.com": "plain@example.com",
}


def test_csv_cells_are_neutralised_and_quoted() -> None:
    """OWASP CSV Injection: a leading =, +, -, @, tab or CR gets a `'`; RFC 4180: a cell with a
    comma, a quote, a CR or an LF is quoted, quotes doubled. Numbers are left alone."""
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("-x") == "'-x" and csv_cell("@a") == "'@a"
    assert csv_cell("a\rb") == '"a\rb"' and csv_cell("a\nb") == '"a\nb"'
    assert csv_cell('say "hi", bob') == '"say ""hi"", bob"'
    assert csv_cell("\r=x") == "\"'\r=x\""
    assert csv_cell(-5) == "-5" and csv_cell("alice@example.com") == "alice@example.com"


async def test_csv_export_neutralises_formulas_and_no_value_starts_a_row(client: TestClient, pool: asyncpg.Pool) -> None:
    """Users named like formulas, created by a client whose User-Agent is a formula: the export
    read by Python's csv reader holds every value as a text cell, one row per event; read line by
    line (a naive split on "\\n", as a log shipper does), every line is still one whole row."""
    acme = await make_tenant(pool, "acme")
    _, writer = await token_headers(pool, acme.id, "okta", "scim", client=FORMULA_CLIENT)
    _, auditor = await token_headers(pool, acme.id, "compliance", "audit")
    for name in NAMES:
        resp = await client.post("/scim/v2/Users", json=new_user(name), headers=writer)
        assert resp.status == 201, name
    await caught_up(pool, "audit")
    resp = await client.get("/audit/v1/events/export", params={"format": "csv"}, headers=auditor)
    assert resp.status == 200
    text = await resp.text()

    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(CSV_COLUMNS) and len(rows) == 1 + len(NAMES)
    records = [dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]]
    assert [r["targetName"] for r in records] == list(NAMES.values())
    assert {r["actorClient"] for r in records} == {"'" + FORMULA_CLIENT}
    assert all(r["type"] == "user.created" for r in records)

    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 2 + len(NAMES)
    for line in lines[1:-1]:
        [row] = list(csv.reader(io.StringIO(line, newline="")))
        assert len(row) == len(CSV_COLUMNS), line


def test_printable_renders_control_characters_visibly() -> None:
    """ANSI escapes, CR, LF, tab, DEL, C1 controls and bidirectional overrides become visible
    escapes; printable text (any script) is left as it is."""
    assert printable("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
    assert printable("a\nb\rc\td\x7f\x9b") == "a\\nb\\rc\\td\\x7f\\x9b"
    assert printable("abc\u202edcba") == "abc\\u202edcba"
    assert printable("Zoë Ng 吴") == "Zoë Ng 吴" and printable(None) == ""


async def test_cli_tables_escape_control_characters_from_data(client: TestClient, pool: asyncpg.Pool, dsn: str) -> None:
    """`scimledger user list` and `audit events` print userNames that carry an ANSI colour, a
    screen clear, a newline that would fake a row and a right-to-left override: as visible
    escapes, one line per user or event, with no escape character reaching the terminal."""
    acme = await make_tenant(pool, "acme")
    names = ["\x1b[31mred@example.com", "\x1b[2J\x1b[Hclear@example.com", "a@example.com\nfake  yes  row",
             "evil\u202emoc.elpmaxe@"]
    for name in names:
        resp = await client.post("/scim/v2/Users", json=new_user(name), headers=acme.headers)
        assert resp.status == 201, name
    env = env_for(dsn)
    listing = (await asyncio.to_thread(cli, "user", "list", "--tenant", "acme", env=env)).stdout
    events = (await asyncio.to_thread(cli, "audit", "events", "--tenant", "acme", env=env)).stdout
    for output in (listing, events):
        assert "\x1b" not in output and "\u202e" not in output and "\r" not in output
        lines = output.splitlines()
        assert len(lines) == 1 + len(names), output
        for name in names:
            assert sum(printable(name) in line for line in lines) == 1, (name, output)


async def test_tenant_names_and_token_labels_cannot_carry_control_characters(pool: asyncpg.Pool, dsn: str) -> None:
    """A tenant name or token label is shown in `tenant list`, `token list` and the audit trail:
    one with a control character is refused (exit 2), and one stored before that check is shown
    escaped."""
    env = env_for(dsn)
    for args in (("tenant", "create", "red\x1b[31m"), ("tenant", "create", "x" * 129)):
        result = await asyncio.to_thread(cli, *args, env=env, check=False)
        assert result.returncode == 2 and result.stdout == "", result.stderr
    acme = await make_tenant(pool, "acme")
    result = await asyncio.to_thread(cli, "token", "issue", "--tenant", "acme", "--label", "a\nb", env=env, check=False)
    assert result.returncode == 2 and result.stdout == ""
    async with pool.acquire() as conn:
        await conn.execute("UPDATE tenants SET name = $2 WHERE id = $1", acme.id, "acme\x1b[2J")
        await conn.execute("UPDATE tokens SET label = $2 WHERE tenant_id = $1", acme.id, "okta\x1b[5m")
    tenants = (await asyncio.to_thread(cli, "tenant", "list", env=env)).stdout
    tokens = (await asyncio.to_thread(cli, "token", "list", "--tenant", str(acme.id), env=env)).stdout
    assert "\x1b" not in tenants + tokens
    assert "acme\\x1b[2J" in tenants and "okta\\x1b[5m" in tokens
