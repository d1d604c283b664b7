-- `scimledger tenant disable NAME`: a disabled tenant's tokens, OAuth clients and console
-- sessions are refused (403, docs/tenancy.md) from the next request on; its data is kept, and
-- `tenant enable NAME` undoes it. NULL: enabled. Read in the one authentication statement.
ALTER TABLE tenants ADD COLUMN disabled_at timestamptz;
