-- Tenants' API keys and their audit log (see memory/tenants.py and memory/audit.py).
--
-- A key is never stored: only a random salt and HMAC-SHA256(salt, secret). The key id is the
-- public half of the key (`am_<key_id>_<secret>`), what `agentmem tenants list` and the audit
-- log show. A revoked key keeps its row (revoked_at set), so the audit log can still name it.
CREATE TABLE tenant_keys (
    key_id     text        PRIMARY KEY,
    tenant     text        NOT NULL,
    salt       bytea       NOT NULL,
    key_hash   bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE INDEX tenant_keys_by_tenant ON tenant_keys (tenant);

-- Who (tenant, key id) did what to what, oldest first per tenant.
CREATE TABLE tenant_audit (
    id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant  text        NOT NULL,
    key_id  text,
    action  text        NOT NULL,
    target  text        NOT NULL,
    detail  jsonb       NOT NULL DEFAULT '{}',
    at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX tenant_audit_by_tenant ON tenant_audit (tenant, id);
