-- A fencing token must have been issued (a security review forged one): a write whose token is
-- above every token the sequence has handed out is refused ('unissued'), before it can raise
-- the key's highest token and lock out every real holder after it. Tokens are unique across
-- all grants (0003), so the sequence's last value bounds every token any holder can carry.
-- Otherwise the write is 0003's.
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
    IF p_token IS NOT NULL AND p_token > (
        SELECT CASE WHEN s.is_called THEN s.last_value ELSE s.last_value - 1 END
            FROM agentmem_fencing_tokens AS s
    ) THEN
        RETURN QUERY SELECT 'unissued'::text, NULL::integer, NULL::bigint, NULL::timestamptz;
        RETURN;
    END IF;
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
