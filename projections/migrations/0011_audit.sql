-- The audit trail (projections/audit.py), built by the "audit" follower: one row per event,
-- keyed by tenant, with the actor and the target (and its name as of that event) pulled out of
-- the event into indexed columns. The payload stays in `events` (joined by primary key).
CREATE TABLE audit_events (
    tenant_id        uuid        NOT NULL,
    position         bigint      NOT NULL,   -- events.global_position
    recorded_at      timestamptz NOT NULL,
    type             text        NOT NULL,
    stream_type      text        NOT NULL,   -- the target's type: user | group
    stream_id        uuid        NOT NULL,   -- the target's id
    version          integer     NOT NULL,
    target_name      text,                   -- userName / displayName as of this event
    actor_kind       text,                   -- token | cli
    actor_token_id   text,
    actor_label      text,
    actor_client     text,
    actor_ip         text,
    actor_request_id text,
    actor_os_user    text,
    actor_host       text,
    PRIMARY KEY (tenant_id, position)
);
-- a target's story, and "who did <type> to <target>": one stream's rows in log order
CREATE INDEX audit_events_target ON audit_events (tenant_id, stream_id, position);
CREATE INDEX audit_events_type ON audit_events (tenant_id, type, position);
CREATE INDEX audit_events_actor_label ON audit_events (tenant_id, actor_label, position);
CREATE INDEX audit_events_actor_token ON audit_events (tenant_id, actor_token_id, position);
CREATE INDEX audit_events_recorded_at ON audit_events (tenant_id, recorded_at);

-- the current name of each target (what the follower folds the next event's name from)
CREATE TABLE audit_targets (
    tenant_id   uuid NOT NULL,
    stream_id   uuid NOT NULL,
    stream_type text NOT NULL,
    name        text,
    PRIMARY KEY (tenant_id, stream_id)
);

-- every name a target ever had, so `target=alice` finds alice after a rename or a deletion
CREATE TABLE audit_target_names (
    tenant_id uuid NOT NULL,
    name_key  text NOT NULL,   -- lower(name): userNames match case-insensitively
    stream_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, name_key, stream_id)
);

-- The tamper-evidence seal (projections/seal.py): per tenant, in log order,
-- hash_n = SHA-256(hash_{n-1} || canonical bytes of event n).
CREATE TABLE audit_seals (
    tenant_id uuid   NOT NULL,
    seq       bigint NOT NULL,   -- 1, 2, 3 ... per tenant, in the follower's (tx, position) order
    position  bigint NOT NULL,
    hash      bytea  NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX audit_seals_position ON audit_seals (tenant_id, position);
