-- Crypto-shredding (eventstore/shredding.py, docs/privacy.md): one data key per stream, wrapped
-- by the master key. A destroyed key keeps its row (when, why) with no key material, so readers
-- can tell "erased" from "never sealed".
CREATE TABLE stream_keys (
    tenant_id        uuid        NOT NULL,
    stream_id        uuid        NOT NULL,
    kek_id           text,                   -- the master key that wrapped it (NULL once destroyed)
    wrapped          bytea,                  -- AES key wrap of the data key (NULL once destroyed)
    created_at       timestamptz NOT NULL DEFAULT now(),
    destroyed_at     timestamptz,
    destroyed_reason text,
    PRIMARY KEY (tenant_id, stream_id),
    CHECK ((wrapped IS NULL) = (destroyed_at IS NOT NULL))
);
