"""An operator's mistakes get one line and a non-zero exit, never a traceback (issue 16): a busy
port, a port or host that cannot be served, a database URL nobody answers, a data dir that
cannot be written, a command run where there is no database. Each runs the real `scimledger`
command in a subprocess. Also `--version`, `migrate` saying "nothing to apply", and results
alone on stdout with every log line on stderr.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
import subprocess
from pathlib import Path

from service.runtime.database import has_database
from service.runtime.datadir import checkout_root
from tests.support import SCIMLEDGER, cli, env_for, free_port


def one_line_refusal(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The refusal is one line on stderr with `words` in it, nothing on stdout, no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_version() -> None:
    result = cli("--version", env=env_for())
    assert result.stdout.startswith("scimledger ") and result.stdout.split()[1][0].isdigit()


def test_a_port_out_of_range_is_refused_by_the_option_and_the_setting(tmp_path: Path) -> None:
    bad = cli("serve", "--port", "80800", env=env_for(data_dir=tmp_path), check=False)
    assert bad.returncode == 2 and "80800" in bad.stderr and "Traceback" not in bad.stderr
    env = {**env_for(data_dir=tmp_path), "SCIMLEDGER_PORT": "80800"}
    one_line_refusal(cli("serve", env=env, check=False), 2, "SCIMLEDGER_PORT", "1 to 65535")
    env = {**env_for(data_dir=tmp_path), "SCIMLEDGER_PORT": "eighty"}
    one_line_refusal(cli("tenant", "list", env=env, check=False), 2, "SCIMLEDGER_PORT", "'eighty'")
    assert not (tmp_path / "pgdata").exists()


def test_a_busy_port_is_one_line_before_the_database_is_touched(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", str(port), env=env_for(data_dir=tmp_path / "var"), check=False)
    one_line_refusal(result, 1, f"127.0.0.1:{port}", "already in use", "--port")
    assert not (tmp_path / "var").exists()


def test_a_host_that_is_not_this_machine_is_one_line(tmp_path: Path) -> None:
    for host in ("no-such-host.invalid", "192.0.2.1"):  # a name nobody resolves, TEST-NET-1
        result = cli("serve", "--host", host, "--port", str(free_port()), env=env_for(data_dir=tmp_path), check=False)
        one_line_refusal(result, 1, host, "not an address of this machine", "--host 127.0.0.1")


def test_an_unreachable_database_url_is_one_line_without_the_password() -> None:
    port = free_port()  # nobody listens there
    env = {**env_for(), "SCIMLEDGER_DATABASE_URL": f"postgresql://scim:hunter2secret@127.0.0.1:{port}/scimledger"}
    for args in (("tenant", "list"), ("migrate",), ("projections", "status")):
        line = one_line_refusal(cli(*args, env=env, check=False), 1, "cannot reach the database", f"127.0.0.1:{port}")
        assert "hunter2secret" not in line


def test_a_data_dir_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = env_for(data_dir=blocker / "var")
    one_line_refusal(cli("migrate", env=env, check=False), 1, "cannot create the data dir", "SCIMLEDGER_DATA_DIR")


def test_a_command_that_finds_no_database_says_where_it_looked_and_creates_none(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    for args in (("tenant", "list"), ("db", "dsn"), ("projections", "status")):
        one_line_refusal(cli(*args, env=env_for(data_dir=empty), check=False), 1, f"no database in {empty}",
                         "scimledger serve", "scimledger migrate")
    assert not (empty / "pgdata").exists()


def test_the_data_dir_does_not_follow_the_working_directory(tmp_path: Path) -> None:
    """`cd elsewhere && scimledger tenant list` never makes elsewhere/var: from a checkout the
    data dir is the checkout's var/ (service/runtime/datadir.py)."""
    env = env_for()
    checkout = checkout_root()
    assert checkout is not None  # the suite runs from the editable install of the checkout
    result = subprocess.run([*SCIMLEDGER, "tenant", "list"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert not (tmp_path / "var").exists()
    if has_database(checkout / "var"):  # someone ran `make run` in this checkout
        assert result.returncode == 0, result.stderr
    else:
        one_line_refusal(result, 1, f"no database in {checkout / 'var'}")


def test_migrate_creates_then_says_nothing_to_apply(tmp_path: Path) -> None:
    env = env_for(data_dir=tmp_path / "var")
    first = cli("migrate", env=env)
    [applied] = [line for line in first.stderr.splitlines() if line.startswith("applied ")]
    assert first.stdout == "" and "0050_tenant_disable" in applied
    second = cli("migrate", env=env)
    assert any(line.startswith("nothing to apply") for line in second.stderr.splitlines()), second.stderr
    dsn = cli("db", "dsn", env=env)
    assert dsn.stdout.startswith("postgresql://") and f"embedded PostgreSQL in {tmp_path / 'var'}" in dsn.stderr


async def test_results_alone_on_stdout_and_every_log_line_on_stderr(dsn: str) -> None:
    """Not on a terminal (a pipe), `projections rebuild users` logs JSON lines, on stderr only;
    `projections status` prints its table and nothing else on stdout."""
    env = env_for(dsn)
    await asyncio.to_thread(cli, "tenant", "create", "acme", env=env)
    await asyncio.to_thread(cli, "user", "create", "--tenant", "acme", "ada@example.com", env=env)
    rebuilt = await asyncio.to_thread(cli, "projections", "rebuild", "users", env=env)
    assert rebuilt.stdout == ""
    logged = [json.loads(line) for line in rebuilt.stderr.splitlines() if line.startswith("{")]
    assert any(entry["event"].startswith("rebuild.") for entry in logged), rebuilt.stderr
    status = await asyncio.to_thread(cli, "projections", "status", env=env)
    assert status.stdout and not any(line.lstrip().startswith("{") for line in status.stdout.splitlines())


async def test_actor_cli_os_user_finds_what_the_table_shows(dsn: str) -> None:
    env = env_for(dsn)
    await asyncio.to_thread(cli, "tenant", "create", "acme", env=env)
    await asyncio.to_thread(cli, "user", "create", "--tenant", "acme", "ada@example.com", env=env)
    table = (await asyncio.to_thread(cli, "audit", "events", "--tenant", "acme", env=env)).stdout
    actor = f"cli:{getpass.getuser()}"
    assert actor in table
    found = await asyncio.to_thread(cli, "audit", "events", "--tenant", "acme", "--actor", actor,
                                    "--format", "jsonl", env=env)
    events = [json.loads(line) for line in found.stdout.splitlines()]
    assert [e["type"] for e in events] == ["user.created"]
    other = await asyncio.to_thread(cli, "audit", "events", "--tenant", "acme", "--actor", "cli:nobody-else",
                                    "--format", "jsonl", env=env)
    assert other.stdout == ""


def test_a_metrics_port_that_is_not_a_port_or_is_the_scim_port_is_refused(tmp_path: Path) -> None:
    env = {**env_for(data_dir=tmp_path), "SCIMLEDGER_METRICS_PORT": "abc"}
    one_line_refusal(cli("serve", env=env, check=False), 2, "SCIMLEDGER_METRICS_PORT", "'abc'")
    port = str(free_port())
    env = {**env_for(data_dir=tmp_path), "SCIMLEDGER_METRICS_PORT": port}
    one_line_refusal(cli("serve", "--port", port, env=env, check=False), 2, "must differ")
    assert not (tmp_path / "pgdata").exists()
