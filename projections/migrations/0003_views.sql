-- Inline views, written in the same transaction as the events they come from.
-- Each row is what a fold of its stream's events gives (projections/users.py, groups.py).

CREATE TABLE users (
    tenant_id     uuid        NOT NULL,
    id            uuid        NOT NULL,
    ordinal       bigint      NOT NULL,  -- global position of user.created: stable paging order
    user_name     text        NOT NULL,
    external_id   text,
    display_name  text,
    active        boolean     NOT NULL,
    resource      jsonb       NOT NULL,  -- stored SCIM resource: no id, meta, groups or password
    version       integer     NOT NULL,
    created       timestamptz NOT NULL,
    last_modified timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- userName is unique per tenant, case-insensitively (RFC 7643 4.1.1 uniqueness "server")
CREATE UNIQUE INDEX users_user_name ON users (tenant_id, lower(user_name));
CREATE INDEX users_external_id ON users (tenant_id, external_id);
CREATE INDEX users_display_name ON users (tenant_id, lower(display_name));
-- the email values IdPs match on (emails.value eq, emails[type eq "work" and value eq ...])
CREATE FUNCTION scim_email_values(resource jsonb) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(lower(e->>'value')) FILTER (WHERE e->>'value' IS NOT NULL), '{}')
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(resource->'emails') = 'array'
                                   THEN resource->'emails' ELSE '[]'::jsonb END) AS e
$$;
CREATE INDEX users_email_values ON users USING gin (scim_email_values(resource));
CREATE INDEX users_ordinal ON users (tenant_id, ordinal);
CREATE INDEX users_active ON users (tenant_id) WHERE active;

CREATE TABLE groups (
    tenant_id     uuid        NOT NULL,
    id            uuid        NOT NULL,
    ordinal       bigint      NOT NULL,
    display_name  text        NOT NULL,
    external_id   text,
    resource      jsonb       NOT NULL,  -- stored SCIM resource without members
    version       integer     NOT NULL,
    created       timestamptz NOT NULL,
    last_modified timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX groups_display_name ON groups (tenant_id, lower(display_name));
CREATE INDEX groups_external_id ON groups (tenant_id, external_id);
CREATE INDEX groups_ordinal ON groups (tenant_id, ordinal);

-- one row per membership: adding or removing one member never reads or rewrites the list
CREATE TABLE group_members (
    tenant_id uuid NOT NULL,
    group_id  uuid NOT NULL,
    member_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, group_id, member_id)
);
CREATE INDEX group_members_member ON group_members (tenant_id, member_id);
