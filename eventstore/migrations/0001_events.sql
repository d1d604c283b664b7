-- The append-only event log (docs/architecture.md, "Events").
CREATE TABLE events (
    tenant_id       uuid        NOT NULL,
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_type     text        NOT NULL,
    stream_id       uuid        NOT NULL,
    version         integer     NOT NULL CHECK (version > 0),
    type            text        NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, global_position),
    -- optimistic concurrency: two writers of the same version of a stream cannot both commit
    UNIQUE (tenant_id, stream_id, version)
);

-- followers read (transaction_id, global_position) > checkpoint below the snapshot xmin
CREATE INDEX events_transaction_order ON events (transaction_id, global_position);

CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
