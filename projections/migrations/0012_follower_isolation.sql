-- No poisoned follower (issue 12; projections/followers/runner.py, dead_letters.py).

-- 1. No index key a follower writes can outgrow a btree row (PostgreSQL refuses an entry over
--    2,704 bytes: "index row size ... exceeds btree version 4 maximum"). Old events in the log
--    may hold anything, so the followers never rely on the SCIM layer's input limits.
--
--    Every name a target had is found by the SHA-256 of its lower-cased form (32 bytes); the
--    query rechecks the name itself, so even a collision could not answer another name.
ALTER TABLE audit_target_names ADD COLUMN name_hash bytea;
UPDATE audit_target_names SET name_hash = sha256(convert_to(name_key, 'UTF8'));
ALTER TABLE audit_target_names ALTER COLUMN name_hash SET NOT NULL;
ALTER TABLE audit_target_names DROP CONSTRAINT audit_target_names_pkey;
ALTER TABLE audit_target_names ADD CONSTRAINT audit_target_names_pkey PRIMARY KEY (tenant_id, name_hash, stream_id);

--    The actor's label and token id are free text from the event's metadata: indexed by their
--    first 200 characters (at most 800 bytes), the query rechecks the whole value. The other
--    keys are bounded already: uuids, positions, times, and `type`, which the audit follower
--    only writes for an event type it knows.
DROP INDEX audit_events_actor_label;
DROP INDEX audit_events_actor_token;
CREATE INDEX audit_events_actor_label ON audit_events (tenant_id, left(actor_label, 200), position);
CREATE INDEX audit_events_actor_token ON audit_events (tenant_id, left(actor_token_id, 200), position);

-- 2. Dead letters: an event a follower could not apply. The follower records it here and goes
--    on with the rest of the log, so one tenant's bad event never stops another tenant's trail.
--    A follower that isolates per event (audit) skips just that event; one that isolates per
--    tenant (seal: a hash chain cannot skip a link) stops that tenant at its first dead letter.
--    The auditor's API reports a tenant with dead letters as incomplete. A rebuild replays the
--    log and records the dead letters anew (an event that applies now leaves none).
CREATE TABLE projection_dead_letters (
    projection text        NOT NULL,
    tenant_id  uuid        NOT NULL,
    position   bigint      NOT NULL,   -- events.global_position
    tx         xid8        NOT NULL,   -- events.transaction_id: (tx, position) is the follower's order
    error      text        NOT NULL,   -- what the follower raised, cut at 4,000 characters
    failed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, tenant_id, position)
);
