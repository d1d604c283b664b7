"""The pure parts: what one event of the log says as SET claims (RFC 9967), and what a push
receiver's answer means (RFC 8935 2.2, 2.3)."""

from __future__ import annotations

import datetime as dt
import uuid

from projections.domain import security_events as sets
from projections.domain.events import GroupMembersRemoved, UserDeactivated, UserUpdated
from service.app import push

NOW = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)
RID = uuid.UUID("2b2f880a-f667-4ac2-84ba-e9381673d462")


def claims(event: object, **kw: object) -> list[tuple[int, dict[str, object]]]:
    options: dict[str, object] = {"stream_type": "user", "resource_id": RID, "version": 4, "recorded_at": NOW,
                                  "txn": "req-1", "method": "PATCH", "form": sets.NOTICE,
                                  "families": {sets.PROV, sets.CAEP}, "resource": None, "external_id": None}
    options.update(kw)
    return sets.set_claims(event, **options)  # type: ignore[arg-type]


def test_a_deactivation_is_prov_deactivate_and_caep_session_revoked() -> None:
    """RFC 9967 2.4.6 and CAEP 1.0 3.1: two SETs, the same subject."""
    (k1, prov), (k2, caep) = claims(UserDeactivated(user_name="alice"), external_id="hr-1")
    assert (k1, k2) == (sets.PROV_SET, sets.CAEP_SET)
    assert prov["events"] == {sets.DEACTIVATE: {}}
    assert prov["sub_id"] == caep["sub_id"] == {"format": "scim", "uri": f"/Users/{RID}", "externalId": "hr-1"}
    revoked = caep["events"][sets.SESSION_REVOKED]  # type: ignore[index]
    assert revoked["event_timestamp"] == int(NOW.timestamp()) and revoked["initiating_entity"] == "admin"


def test_put_and_patch_differ_by_the_recorded_method() -> None:
    """RFC 9967 2.4.2 / 2.4.3: a PUT is prov:put, anything else prov:patch."""
    update = UserUpdated(set={"displayName": "A"}, removed=["title"])
    (_, put), = claims(update, method="PUT", families={sets.PROV})
    (_, cli), = claims(update, method=None, families={sets.PROV})
    assert put["events"] == {sets.PUT_NOTICE: {"version": 'W/"4"', "attributes": ["displayName", "title"]}}
    assert sets.PATCH_NOTICE in cli["events"]  # type: ignore[operator]


def test_a_membership_change_is_a_patch_of_the_group_with_its_patchop_in_full() -> None:
    (_, full), = claims(GroupMembersRemoved(members=["m1"]), stream_type="group", form=sets.FULL)
    data = full["events"][sets.PATCH_FULL]["data"]  # type: ignore[index]
    assert data["Operations"] == [{"op": "remove", "path": "members", "value": [{"value": "m1"}]}]
    assert full["sub_id"] == {"format": "scim", "uri": f"/Groups/{RID}"}


def test_the_jti_is_stable_per_stream_position_and_kind() -> None:
    stream = uuid.uuid4()
    assert sets.jti(stream, 7, 0) == sets.jti(stream, 7, 0)
    assert len({sets.jti(stream, 7, 0), sets.jti(stream, 7, 1), sets.jti(stream, 8, 0), sets.jti(uuid.uuid4(), 7, 0)}) == 4


def test_receiver_answers_per_rfc_8935() -> None:
    """2.2: 202 accepts; 2.3: an err code about the stream stops the stream, invalid_request
    refuses the SET; 5xx, 408 and 429 are retried (Retry-After kept)."""
    assert push.classify(202, b"", None).kind == push.ACCEPTED
    for code in sorted(push.STREAM_ERRORS):
        assert push.classify(400, b'{"err": "%s"}' % code.encode(), None).kind == push.STREAM_REFUSED
    assert push.classify(400, b'{"err": "invalid_request", "description": "x"}', None).kind == push.REFUSED
    assert push.classify(400, b"<html>", None).kind == push.REFUSED
    assert push.classify(401, b"", None).kind == push.STREAM_REFUSED
    assert push.classify(302, b"", None).kind == push.STREAM_REFUSED
    busy = push.classify(429, b"", "3")
    assert busy.kind == push.TRANSIENT and busy.retry_after == 3.0
    assert push.classify(503, b"", "soon").retry_after is None


def test_backoff_grows_with_full_jitter_and_a_cap() -> None:
    delays = [push.backoff(a, base=0.1, cap=5.0) for a in range(1, 40) for _ in range(5)]
    assert all(0 <= d <= 5.0 for d in delays) and len(set(delays)) > 100
    assert push.backoff(1, retry_after=2.0, base=0.1, cap=5.0) == 2.0
