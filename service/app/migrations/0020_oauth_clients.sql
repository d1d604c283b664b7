-- OAuth 2.0 clients (RFC 6749 4.4 client credentials; RFC 7523 2.2 private_key_jwt / workload
-- identity federation). Secrets and access tokens are never stored, only SHA-256 hashes.
CREATE TABLE oauth_clients (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id),
    id          uuid        NOT NULL,            -- the client_id
    label       text        NOT NULL,            -- names the actor in the audit trail
    scope       text        NOT NULL CHECK (scope IN ('scim', 'audit')),
    kind        text        NOT NULL CHECK (kind IN ('secret', 'federated')),
    issuer      text,                            -- federated: the trusted issuer (iss)
    subject     text,                            -- federated: the subject (sub)
    jwks_url    text,                            -- federated: where the issuer's keys are
    jwks        jsonb,                           -- federated: the keys, from a file
    audience    text,                            -- federated: an `aud` the issuer puts in (e.g. api://<app id>)
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (tenant_id, id),
    CHECK (kind = 'secret' OR (issuer IS NOT NULL AND subject IS NOT NULL
                               AND (jwks_url IS NOT NULL OR jwks IS NOT NULL)))
);
CREATE UNIQUE INDEX oauth_clients_by_id ON oauth_clients (id);
-- one active federated client per (issuer, subject): an assertion names exactly one client
CREATE UNIQUE INDEX oauth_clients_by_subject ON oauth_clients (issuer, subject)
    WHERE kind = 'federated' AND revoked_at IS NULL;

CREATE TABLE oauth_client_secrets (
    tenant_id   uuid        NOT NULL,
    client_id   uuid        NOT NULL,
    id          uuid        NOT NULL,
    secret_hash bytea       NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    PRIMARY KEY (tenant_id, client_id, id),
    FOREIGN KEY (tenant_id, client_id) REFERENCES oauth_clients (tenant_id, id)
);

CREATE TABLE oauth_access_tokens (
    tenant_id   uuid        NOT NULL,
    id          uuid        NOT NULL,
    client_id   uuid        NOT NULL,
    secret_id   uuid,                            -- the secret it was issued for (NULL: federated)
    token_hash  bytea       NOT NULL UNIQUE,
    scope       text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, client_id) REFERENCES oauth_clients (tenant_id, id)
);
CREATE INDEX oauth_access_tokens_expiry ON oauth_access_tokens (tenant_id, client_id, expires_at);

-- RFC 7523 3: a client assertion's jti is used once; kept until the assertion expires
CREATE TABLE oauth_assertion_jtis (
    tenant_id   uuid        NOT NULL,
    client_id   uuid        NOT NULL,
    jti         text        NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, client_id, jti)
);
