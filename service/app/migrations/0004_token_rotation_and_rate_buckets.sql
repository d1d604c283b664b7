-- Token rotation: the old token keeps working until expires_at (the grace period) and names the
-- token that replaced it, so `token list` and the audit trail can follow the chain.
ALTER TABLE tokens ADD COLUMN replaced_by uuid;

-- Per-tenant rate limit buckets (service/ratelimit.py, docs/tenancy.md). UNLOGGED: no WAL per
-- request; after a crash the table is empty and every bucket starts full, which is harmless.
CREATE UNLOGGED TABLE rate_buckets (
    tenant_id    uuid             PRIMARY KEY,
    tokens       double precision NOT NULL,  -- level at refilled_at
    refilled_at  timestamptz      NOT NULL
);

-- Lease up to p_wanted tokens from a tenant's bucket (refill rate p_rate tokens/s, capacity
-- p_burst). Returns how many were granted (0..p_wanted) and, when none, the seconds until one
-- token is available. One round trip; concurrent callers are serialised by the row lock, and the
-- clock is the database's, so every worker on every host sees the same bucket.
CREATE FUNCTION rate_lease(p_tenant uuid, p_rate double precision, p_burst double precision,
                           p_wanted integer, OUT granted integer, OUT wait_s double precision)
LANGUAGE plpgsql AS $$
DECLARE
    level double precision;
    last  timestamptz;
    now_  timestamptz;
BEGIN
    SELECT tokens, refilled_at INTO level, last FROM rate_buckets
    WHERE tenant_id = p_tenant FOR UPDATE;
    now_ := clock_timestamp();  -- read after the lock: time never runs backwards for a bucket
    IF NOT FOUND THEN
        level := p_burst;
        INSERT INTO rate_buckets (tenant_id, tokens, refilled_at) VALUES (p_tenant, p_burst, now_)
        ON CONFLICT (tenant_id) DO NOTHING;
        IF NOT FOUND THEN  -- a concurrent first lease created it: lease from that row
            SELECT tokens, refilled_at INTO level, last FROM rate_buckets
            WHERE tenant_id = p_tenant FOR UPDATE;
            now_ := clock_timestamp();
        ELSE
            last := now_;
        END IF;
    END IF;
    level := least(p_burst, level + p_rate * greatest(0, extract(epoch FROM now_ - last)));
    granted := greatest(0, least(p_wanted, floor(level)))::integer;
    level := level - granted;
    UPDATE rate_buckets SET tokens = level, refilled_at = now_ WHERE tenant_id = p_tenant;
    wait_s := CASE WHEN granted > 0 THEN 0 ELSE (1 - level) / p_rate END;
END
$$;
