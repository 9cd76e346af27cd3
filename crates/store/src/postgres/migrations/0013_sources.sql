-- Issue 16: sources (S9). A source (an integration: the help desk, the CRM)
-- is a document of kind 'source' ({"name", "icon"}); a secret key may be
-- bound to one: what it sends carries that source, and it may name no other.
ALTER TABLE api_keys ADD COLUMN source TEXT;
CREATE INDEX api_keys_by_source ON api_keys (source) WHERE source IS NOT NULL;
