-- Tenants (customers) and their bearer tokens. Secrets are never stored, only SHA-256 hashes.
CREATE TABLE tenants (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL UNIQUE,
    seats       integer     CHECK (seats IS NULL OR seats >= 0),   -- NULL: no seat limit
    rate_limit  real        CHECK (rate_limit IS NULL OR rate_limit > 0),  -- requests/s; NULL: default
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tokens (
    tenant_id    uuid        NOT NULL REFERENCES tenants (id),
    id           uuid        NOT NULL,
    label        text        NOT NULL,
    scope        text        NOT NULL CHECK (scope IN ('scim', 'audit')),
    secret_hash  bytea       NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    expires_at   timestamptz,  -- set on the old secret by `token rotate` (grace period)
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX tokens_by_id ON tokens (id);
