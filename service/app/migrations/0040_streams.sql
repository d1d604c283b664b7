-- Security-event streams to the app (docs/events.md): RFC 9967 SCIM events as signed SETs
-- (RFC 8417), pushed (RFC 8935) or polled (RFC 8936).

-- 1. The scope `events`: a token or OAuth client that reads the tenant's poll streams only.
ALTER TABLE tokens DROP CONSTRAINT tokens_scope_check;
ALTER TABLE tokens ADD CONSTRAINT tokens_scope_check CHECK (scope IN ('scim', 'audit', 'events'));
ALTER TABLE oauth_clients DROP CONSTRAINT oauth_clients_scope_check;
ALTER TABLE oauth_clients ADD CONSTRAINT oauth_clients_scope_check CHECK (scope IN ('scim', 'audit', 'events'));

-- 2. A stream: a receiver, a delivery method, the events it wants, and its delivery state. The
--    streams follower (projections/followers/streams.py) reads the enabled streams of the
--    tenants of each batch; the push deliverer (service/app/push.py) writes the counters.
CREATE TABLE event_streams (
    tenant_id       uuid        NOT NULL REFERENCES tenants (id),
    id              uuid        NOT NULL,
    delivery        text        NOT NULL CHECK (delivery IN ('push', 'poll')),
    endpoint        text,                                   -- push: the receiver's URL
    push_headers    bytea,                                  -- push: header values, AES-GCM sealed (service/app/set_keys.py)
    header_names    text[]      NOT NULL DEFAULT '{}',      -- push: their names, shown (values masked)
    events          text[]      NOT NULL,                   -- 'prov', 'caep'
    format          text        NOT NULL CHECK (format IN ('full', 'notice')),
    audience        text        NOT NULL,
    -- the log position the stream was created at: it gets the events after it
    start_tx        xid8        NOT NULL,
    start_position  bigint      NOT NULL,
    state           text        NOT NULL DEFAULT 'enabled' CHECK (state IN ('enabled', 'error')),
    delivered       bigint      NOT NULL DEFAULT 0,         -- SETs the receiver accepted (202, or acknowledged)
    retried         bigint      NOT NULL DEFAULT 0,         -- attempts that failed and were retried
    failed          bigint      NOT NULL DEFAULT 0,         -- SETs the receiver refused (RFC 8935 2.3 / RFC 8936 setErrs)
    last_error      text,
    last_error_at   timestamptz,
    delivered_tx    xid8,                                   -- the log position of the last SET delivered
    delivered_position bigint,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX event_streams_by_id ON event_streams (id);

-- 3. The SETs still to deliver, per stream, in log order: written by the streams follower in the
--    transaction that advances its checkpoint, deleted when the receiver answers 202 (push) or
--    acknowledges it (poll). `claims` holds what the log says (subject, events, txn, time of
--    the event); iss, aud, iat and the signature are added when the SET is sent. `error` set:
--    the receiver refused it for good (kept, skipped; `stream replay` sends it again).
CREATE TABLE stream_sets (
    tenant_id   uuid        NOT NULL,
    stream_id   uuid        NOT NULL,
    tx          xid8        NOT NULL,      -- events.transaction_id
    position    bigint      NOT NULL,      -- events.global_position
    kind        smallint    NOT NULL,      -- 0: the RFC 9967 SET, 1: the CAEP session-revoked SET
    jti         text        NOT NULL,      -- stable across redeliveries (stream id, position, kind)
    claims      jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL,      -- the event's
    error       text,
    PRIMARY KEY (tenant_id, stream_id, tx, position, kind),
    FOREIGN KEY (tenant_id, stream_id) REFERENCES event_streams (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX stream_sets_by_jti ON stream_sets (tenant_id, stream_id, jti);

-- 4. The SET signing keys, service-wide (the issuer is the service): the private key sealed with
--    AES-GCM under the key-encryption key in the data dir (mode 0600), never in plaintext. The
--    newest is the signing key; a retired one stays published at /.well-known/jwks.json until
--    `retire_after`, so SETs it signed stay verifiable through a rotation.
CREATE TABLE set_signing_keys (
    kid          text        PRIMARY KEY,
    public_jwk   jsonb       NOT NULL,
    private_key  bytea       NOT NULL,  -- nonce || AES-GCM(PKCS#8 PEM)
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    retire_after timestamptz            -- NULL: the signing key, or not yet rotated out
);
