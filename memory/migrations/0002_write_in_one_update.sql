-- A write to an existing document in one UPDATE of its head row: the version check, the
-- fencing-token check, the row lock and the new version in one statement (0001 ran an
-- INSERT ... ON CONFLICT, a SELECT ... FOR UPDATE and an UPDATE on every write). A concurrent
-- writer waits for the row lock and re-checks the condition on the row as that writer left it
-- (READ COMMITTED re-evaluates the WHERE clause on the updated row), so two writers expecting
-- the same version cannot both succeed. When the UPDATE changes nothing (a new document, a
-- conflict or a stale token) the function takes 0001's path, which says which it was.
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
            AND (p_token IS NULL OR h.highest_token IS NULL OR p_token >= h.highest_token)
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
