-- Async followers (projections/follower.py): where each one has got to in the global log.
-- The log is global, so a checkpoint is too: one row per projection, not per tenant; the view
-- rows a follower writes carry tenant_id. The checkpoint is updated in the same transaction as
-- the view rows of the batch it covers.
CREATE TABLE projection_checkpoints (
    name            text        PRIMARY KEY,
    tx              xid8        NOT NULL DEFAULT '0',   -- (tx, position): the last event applied
    position        bigint      NOT NULL DEFAULT 0,
    state           text        NOT NULL DEFAULT 'running'
                                CHECK (state IN ('running', 'stopped', 'failed')),
    error           text,                                -- why it failed (state 'failed')
    failed_position bigint,                              -- the event it could not apply
    updated_at      timestamptz NOT NULL DEFAULT now()
);
