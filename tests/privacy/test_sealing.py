"""The sealed form of a user's payloads (docs/privacy.md): what stays in clear, what opens, and
that every reader's path (the dict of a page, the JSON text of a rebuild) gives the same event.
AES-GCM with the event's identity as associated data (RFC 5116), AES key wrap (RFC 3394)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import msgspec
import pytest

from eventstore import shredding
from eventstore.store import NewEvent
from projections.domain import personal
from projections.domain.events import (
    UserCreated,
    UserDeactivated,
    UserUpdated,
    decode_event,
    encode_event,
)
from projections.privacy import StreamOpener, TamperedPayload, open_data, seal_events

TENANT, STREAM = uuid.uuid4(), uuid.uuid4()
RESOURCE = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ada@x.example",
            "name": {"givenName": "Ada"}, "active": False, "title": "Countess"}
EVENTS = [UserCreated(resource=RESOURCE), UserUpdated(set={"title": "Analyst", "active": True}, removed=["nickName"]),
          UserDeactivated(user_name="ada@x.example")]


def pg_text(data: dict[str, object]) -> str:
    """PostgreSQL's text form of a jsonb value (`"key": value`, keys by length then bytes)."""
    def fmt(v: object) -> str:
        if isinstance(v, dict):
            keys = sorted(v, key=lambda k: (len(k.encode()), k.encode()))
            return "{" + ", ".join(f"{msgspec.json.encode(k).decode()}: {fmt(v[k])}" for k in keys) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return msgspec.json.encode(v).decode()
    return fmt(data)


@pytest.fixture
def sealed() -> tuple[bytes, list[NewEvent]]:
    key = secrets.token_bytes(shredding.KEY_BYTES)
    new = [NewEvent(str(e.__struct_config__.tag), encode_event(e)) for e in EVENTS]
    return key, seal_events(new, TENANT, STREAM, 1, key)


def decode_stored(raw: str, version: int, keys: shredding.Keys) -> object:
    return StreamOpener(TENANT, STREAM, keys).decode(raw, version)


def test_only_what_the_audit_trail_needs_stays_in_clear(sealed: tuple[bytes, list[NewEvent]]) -> None:
    _, stored = sealed
    text = " ".join(msgspec.json.encode(e.data).decode() for e in stored)
    assert "ada@x.example" not in text and "Countess" not in text and "Analyst" not in text and "Ada" not in text
    assert stored[0].data["resource"] == {"schemas": RESOURCE["schemas"], "active": False}
    assert stored[1].data["set"] == {"active": True} and stored[1].data["removed"] == ["nickName"]
    assert "user_name" not in stored[2].data and stored[2].data["type"] == "user.deactivated"


def test_every_path_opens_to_the_event_as_written(sealed: tuple[bytes, list[NewEvent]]) -> None:
    key, stored = sealed
    keys: shredding.Keys = {(TENANT, STREAM): key}
    for version, (event, row) in enumerate(zip(EVENTS, stored, strict=True), start=1):
        assert decode_event(open_data(dict(row.data), TENANT, STREAM, version, keys)) == event
        assert decode_stored(pg_text(dict(row.data)), version, keys) == event
        compact = msgspec.json.encode(row.data).decode()  # another spelling: through the dict
        assert decode_stored(compact, version, keys) == event


def test_a_destroyed_key_leaves_the_erased_form(sealed: tuple[bytes, list[NewEvent]]) -> None:
    _, stored = sealed
    keys: shredding.Keys = {(TENANT, STREAM): None}
    opened = [open_data(dict(e.data), TENANT, STREAM, v, keys) for v, e in enumerate(stored, start=1)]
    assert all(personal.is_erased(d) for d in opened)
    assert decode_stored(pg_text(dict(stored[2].data)), 3, keys) == UserDeactivated(user_name="")
    assert decode_event(opened[0]) == UserCreated(resource={"schemas": RESOURCE["schemas"], "active": False})


def test_a_ciphertext_moved_to_another_event_does_not_open(sealed: tuple[bytes, list[NewEvent]]) -> None:
    """The associated data binds the token to its tenant, stream, version and type."""
    key, stored = sealed
    keys: shredding.Keys = {(TENANT, STREAM): key, (TENANT, uuid.UUID(int=7)): key}
    with pytest.raises(TamperedPayload):
        open_data(dict(stored[0].data), TENANT, STREAM, 2, keys)  # another version
    with pytest.raises(TamperedPayload):
        open_data(dict(stored[0].data), TENANT, uuid.UUID(int=7), 1, keys)  # another subject
    with pytest.raises(TamperedPayload):
        decode_stored(pg_text(dict(stored[1].data)), 1, keys)


@pytest.fixture
def own_master_keys() -> Iterator[None]:
    """This test configures master keys of its own; the process's come back afterwards."""
    held = dict(shredding._masters), shredding.current_master_or_none()
    yield
    if held[1] is not None:
        shredding.configure(held[1], *[k for k in held[0].values() if k != held[1]])


@pytest.mark.usefixtures("own_master_keys")
def test_keys_wrap_under_the_master_key_and_rewrap_to_a_new_one() -> None:
    old, new = (shredding.MasterKey(secrets.token_bytes(32)) for _ in range(2))
    shredding.configure(old)
    key, wrapped = shredding.new_stream_key()
    assert wrapped.kek_id == old.id and shredding.unwrap(wrapped) == key
    shredding.configure(new)
    with pytest.raises(shredding.KeyUnavailable):
        shredding.unwrap(wrapped)  # a key of a master key this process does not hold
    shredding.configure(new, old)
    assert shredding.unwrap(wrapped) == key


def test_a_rebuild_opens_only_what_the_fold_reads(sealed: tuple[bytes, list[NewEvent]]) -> None:
    """The users-view fold needs a status event's type only (clear): a rebuild does not open it."""
    key, stored = sealed
    opener = StreamOpener(TENANT, STREAM, {(TENANT, STREAM): key})
    opened = [opener.decode(pg_text(dict(e.data)), v, only=personal.FOLD_OPENS) for v, e in enumerate(stored, start=1)]
    assert opened[:2] == EVENTS[:2]
    assert opened[2] == UserDeactivated(user_name="")
