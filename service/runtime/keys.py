"""The master key file (docs/privacy.md): found, made at first start, loaded into the event
store's crypto-shredding (eventstore/shredding.py).

Where: SCIMLEDGER_MASTER_KEY_FILE, else `master.key` in the data dir. When that file does not
exist it is made (32 random bytes, base64, mode 0600) and the log says where, so the operator
backs it up: without it no subject's personal data can be read again. A file beside it named
`<name>.previous` is the master key before a rotation (`scimledger keys rotate`); it still
unwraps the data keys not yet re-wrapped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog

from eventstore import shredding
from service.runtime.config import Settings, SetupError

log = structlog.get_logger("scimledger.keys")

FILE_NAME = "master.key"


def master_key_path(settings: Settings) -> Path:
    return settings.master_key_file or settings.data_dir / FILE_NAME


def keys_dir(settings: Settings) -> Path:
    """The folder of the master key file: the SET signing keys' key-encryption key lives beside
    it (service/app/set_keys.py), so one mounted Secret or volume holds every key the service
    needs and every process of every host reads the same ones."""
    return master_key_path(settings).parent


def previous_path(path: Path) -> Path:
    return path.with_name(path.name + ".previous")


def _read_keys(path: Path) -> list[shredding.MasterKey]:
    """The key in `path`, then the one in its `.previous` when there is one."""
    keys = [shredding.read_master_key(path)]
    if previous_path(path).exists():
        keys.append(shredding.read_master_key(previous_path(path)))
    return keys


def load_master_keys(settings: Settings, *, create: bool = True) -> shredding.MasterKey:
    """Configure the process's master keys from the file (made when missing and `create`);
    returns the current one. A file that cannot be read or made is a SetupError."""
    path = master_key_path(settings)
    try:
        if not path.exists():
            if not create:
                raise SetupError(f"no master key at {path}; set SCIMLEDGER_MASTER_KEY_FILE to the key's file")
            try:
                shredding.write_master_key(path)
                log.warning("master_key.created", path=str(path),
                            hint="back this file up: without it no subject's personal data can be read")
            except FileExistsError:  # another process made it first
                pass
        keys = _read_keys(path)
    except shredding.KeyUnavailable as e:
        raise SetupError(f"master key: {e}") from None
    except OSError as e:
        raise SetupError(f"master key {path}: {e.strerror or e}; set SCIMLEDGER_MASTER_KEY_FILE "
                         "to a readable file, or make the data dir writable") from None
    shredding.configure(*keys)
    shredding.on_reload(_reloader(path))
    return keys[0]


def _reloader(path: Path) -> Callable[[], bool]:
    """Re-read `path` (and its `.previous`) when the file changed since the last look."""
    seen = _stamp(path)

    def reload() -> bool:
        nonlocal seen
        stamp = _stamp(path)
        if stamp == seen or stamp is None:
            return False
        seen = stamp
        try:
            keys = _read_keys(path)
        except (OSError, shredding.KeyUnavailable) as e:
            log.error("master_key.reload_failed", path=str(path), error=str(e))
            return False
        old = [k for k in (shredding.current_master_or_none(),) if k is not None and k not in keys]
        shredding.configure(*keys, *old)  # a key this process held stays usable until it restarts
        log.info("master_key.reloaded", path=str(path), current=keys[0].id)
        return True

    return reload


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)
