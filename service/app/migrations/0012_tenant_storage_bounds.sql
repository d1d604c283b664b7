-- Per-tenant storage bounds (service/app/storage.py, docs/security.md): at most max_users users
-- and max_groups groups live in a tenant's views. `tenant create` sets them from
-- SCIMLEDGER_MAX_USERS_PER_TENANT / SCIMLEDGER_MAX_GROUPS_PER_TENANT, `tenant update` changes them;
-- tenants that existed before this migration get the same defaults.
ALTER TABLE tenants
    ADD COLUMN max_users  integer NOT NULL DEFAULT 1000000 CHECK (max_users >= 0),
    ADD COLUMN max_groups integer NOT NULL DEFAULT 100000 CHECK (max_groups >= 0);

-- An upper bound of each count, so that a create is checked without counting the tenant's rows:
-- every create adds one to it; only when it reaches the limit are the rows counted (at most once
-- per `*_counted_at` interval) and the bound set to the count. NULL: not counted yet.
CREATE TABLE tenant_usage (
    tenant_id         uuid        PRIMARY KEY REFERENCES tenants (id),
    users_bound       bigint,
    users_counted_at  timestamptz,
    groups_bound      bigint,
    groups_counted_at timestamptz
);
