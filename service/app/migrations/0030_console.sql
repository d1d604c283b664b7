-- The web console (service/http/console, docs/console.md): its sessions and the per-tenant
-- request log behind the provisioning log page.

-- A console session: the browser holds a random id in an HttpOnly cookie; only its SHA-256 is
-- stored. It belongs to the token that signed in, so it ends when that token is revoked or
-- expires (checked on every request, in the same statement that finds the session).
CREATE TABLE console_sessions (
    id_hash      bytea       PRIMARY KEY,
    tenant_id    uuid        NOT NULL,
    token_id     uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),  -- kept to the minute (idle expiry)
    expires_at   timestamptz NOT NULL,                -- absolute expiry
    FOREIGN KEY (tenant_id, token_id) REFERENCES tokens (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
CREATE INDEX console_sessions_token ON console_sessions (tenant_id, token_id);

-- What each /scim/v2 request of an authenticated IdP connection did: no bodies, no headers but
-- the User-Agent, no secrets. Written in batches off the request path (service/app/request_log.py)
-- and pruned to a retention period and a row cap per tenant.
CREATE TABLE request_log (
    tenant_id     uuid        NOT NULL,
    id            bigint      GENERATED ALWAYS AS IDENTITY,
    at            timestamptz NOT NULL,
    token_id      uuid,
    token_label   text        NOT NULL,
    client        text,
    ip            text,
    request_id    text,
    method        text        NOT NULL,
    path          text        NOT NULL,
    resource_type text,
    resource_id   text,
    filter        text,
    status        smallint    NOT NULL,
    scim_type     text,
    detail        text,
    duration_ms   real        NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX request_log_at ON request_log (tenant_id, at);
CREATE INDEX request_log_label ON request_log (tenant_id, token_label, id);
