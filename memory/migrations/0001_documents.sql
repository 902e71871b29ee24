-- Versioned documents: every version is a row; the head row per key serialises writers and
-- remembers the highest fencing token any writer of that key has presented.

CREATE TABLE documents (
    namespace     text        NOT NULL,
    key           text        NOT NULL,
    version       integer     NOT NULL CHECK (version >= 1),
    value         jsonb       NOT NULL,
    agent_id      text        NOT NULL,
    fencing_token bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, key, version)
);

CREATE TABLE document_heads (
    namespace     text    NOT NULL,
    key           text    NOT NULL,
    version       integer NOT NULL DEFAULT 0,
    highest_token bigint,
    PRIMARY KEY (namespace, key)
);

-- One write, one round trip: check the fencing token and the expected version under the
-- head row's lock, then append the next version. Returns what happened instead of raising,
-- so the caller can raise an error that names the key and the versions.
CREATE FUNCTION agentmem_write(
    p_namespace text, p_key text, p_value jsonb, p_agent text, p_expected integer, p_token bigint
) RETURNS TABLE (outcome text, version integer, highest_token bigint, created_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    head document_heads%ROWTYPE;
    written timestamptz;
BEGIN
    INSERT INTO document_heads AS h (namespace, key) VALUES (p_namespace, p_key)
        ON CONFLICT DO NOTHING;
    SELECT * INTO head FROM document_heads AS h
        WHERE h.namespace = p_namespace AND h.key = p_key FOR UPDATE;
    IF p_token IS NOT NULL AND head.highest_token IS NOT NULL AND p_token < head.highest_token THEN
        RETURN QUERY SELECT 'stale'::text, head.version, head.highest_token, NULL::timestamptz;
        RETURN;
    END IF;
    IF p_expected IS NOT NULL AND p_expected <> head.version THEN
        RETURN QUERY SELECT 'conflict'::text, head.version, head.highest_token, NULL::timestamptz;
        RETURN;
    END IF;
    INSERT INTO documents (namespace, key, version, value, agent_id, fencing_token)
        VALUES (p_namespace, p_key, head.version + 1, p_value, p_agent, p_token)
        RETURNING documents.created_at INTO written;
    UPDATE document_heads AS h
        SET version = head.version + 1,
            highest_token = GREATEST(h.highest_token, p_token)
        WHERE h.namespace = p_namespace AND h.key = p_key;
    RETURN QUERY SELECT 'ok'::text, head.version + 1, GREATEST(head.highest_token, p_token), written;
END
$$;
