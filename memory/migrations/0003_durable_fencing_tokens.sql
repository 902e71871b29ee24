-- Fencing tokens issued by PostgreSQL, not by Redis (see memory/locks.py for the protocol).
--
-- Every grant of a lock takes its token from ONE sequence, so tokens are unique across all
-- grants of all resources: two writes carrying the same token come from the same grant. The
-- row of lock_fences that the same statement upserts is what makes the token durable when the
-- statement returns: the upsert writes WAL under a transaction id, so its commit waits for
-- that WAL (and the sequence's, which precedes it) to reach disk; a bare nextval() that does
-- not log the sequence commits without waiting. The row also records the last token issued
-- for each resource (for inspection and tests).
CREATE SEQUENCE agentmem_fencing_tokens AS bigint MINVALUE 1;

-- An existing database may hold tokens issued by Redis (before this migration): new tokens
-- start above all of them, so a run that resumes is not refused for its older tokens.
SELECT setval('agentmem_fencing_tokens', COALESCE(max(highest_token), 0) + 1, false)
    FROM document_heads;

CREATE TABLE lock_fences (
    namespace text        NOT NULL,
    resource  text        NOT NULL,
    token     bigint      NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, resource)
);

-- A write as in 0002, with two changes in what is accepted:
--   * a token equal to the key's highest is accepted as before; since tokens are unique per
--     grant, equality now means the same grant (the holder writing again), never a second
--     holder that Redis granted the same token;
--   * a write without a token to a key that has seen one is refused ('unfenced'): a caller
--     that does not hold the lock cannot slip a write between fenced ones.
CREATE OR REPLACE FUNCTION agentmem_write(
    p_namespace text, p_key text, p_value jsonb, p_agent text, p_expected integer, p_token bigint
) RETURNS TABLE (outcome text, version integer, highest_token bigint, created_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    head document_heads%ROWTYPE;
    new_version integer;
    new_token bigint;
    written timestamptz;
BEGIN
    UPDATE document_heads AS h
        SET version = h.version + 1,
            highest_token = GREATEST(h.highest_token, p_token)
        WHERE h.namespace = p_namespace AND h.key = p_key
            AND (p_expected IS NULL OR h.version = p_expected)
            AND (h.highest_token IS NULL OR p_token >= h.highest_token)
        RETURNING h.version, h.highest_token INTO new_version, new_token;
    IF FOUND THEN
        INSERT INTO documents (namespace, key, version, value, agent_id, fencing_token)
            VALUES (p_namespace, p_key, new_version, p_value, p_agent, p_token)
            RETURNING documents.created_at INTO written;
        RETURN QUERY SELECT 'ok'::text, new_version, new_token, written;
        RETURN;
    END IF;
    INSERT INTO document_heads AS h (namespace, key) VALUES (p_namespace, p_key)
        ON CONFLICT DO NOTHING;
    SELECT * INTO head FROM document_heads AS h
        WHERE h.namespace = p_namespace AND h.key = p_key FOR UPDATE;
    IF head.highest_token IS NOT NULL AND p_token IS NULL THEN
        RETURN QUERY SELECT 'unfenced'::text, head.version, head.highest_token, NULL::timestamptz;
        RETURN;
    END IF;
    IF head.highest_token IS NOT NULL AND p_token < head.highest_token THEN
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
