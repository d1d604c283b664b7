-- The token cache (service/app/token_cache.py): every change that can alter what a bearer token
-- stands for sends NOTIFY scimledger_credentials at its commit, and each worker's cache empties
-- itself. Statement-level: a revocation of many tokens is one notification. last_used_at (kept
-- by every lookup) is not among the columns, so lookups notify nothing.
CREATE FUNCTION notify_credentials() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('scimledger_credentials', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER tokens_credentials_changed
    AFTER UPDATE OF revoked_at, expires_at, scope, label, secret_hash, tenant_id OR DELETE ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION notify_credentials();

CREATE TRIGGER tenants_credentials_changed
    AFTER UPDATE OR DELETE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION notify_credentials();
