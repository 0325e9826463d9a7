-- Spindle PostgreSQL broker, schema version 2: map channels (docs/maps.md).
--
-- A map channel keeps one row per key in `{p}_map_state` and, unless it is ephemeral
-- (`stream_size` 0), its changes in `{p}_map_stream` under the `(epoch, offset)` of
-- `{p}_map_meta`. Every change is delivered through the outbox like a publication (kind `p`,
-- with `map_key` and `removed`), under the same shard lock, so a channel's changes reach every
-- node in offset order. The meta row also keeps the channel's settings as the core last saw
-- them, so the expiry pass and an application's `{p}_map_publish` work without the namespace.

ALTER TABLE {p}_outbox ADD COLUMN map_key text, ADD COLUMN removed boolean NOT NULL DEFAULT false;

CREATE TABLE {p}_map_meta (
    channel text PRIMARY KEY,
    epoch text NOT NULL,
    top bigint NOT NULL DEFAULT 0,
    -- 0: no stream (ephemeral).
    stream_size integer NOT NULL,
    stream_ttl_ms bigint NOT NULL,
    -- 0: the row never expires (persistent).
    meta_ttl_ms bigint NOT NULL,
    -- 0: entries never expire.
    key_ttl_ms bigint NOT NULL,
    -- Rows of the channel in `{p}_map_state`.
    num_keys bigint NOT NULL DEFAULT 0,
    stream_expires_at timestamptz NOT NULL,
    -- NULL: never.
    expires_at timestamptz
);

CREATE TABLE {p}_map_stream (
    channel text NOT NULL,
    "offset" bigint NOT NULL,
    key text NOT NULL,
    removed boolean NOT NULL,
    data bytea NOT NULL,
    info bytea,
    tags jsonb,
    PRIMARY KEY (channel, "offset")
);

-- Keys in byte order ("C"): state pages continue after the cursor's key.
CREATE TABLE {p}_map_state (
    channel text NOT NULL,
    key text COLLATE "C" NOT NULL,
    "offset" bigint NOT NULL,
    data bytea NOT NULL,
    info bytea,
    tags jsonb,
    version bigint NOT NULL DEFAULT 0,
    version_epoch text NOT NULL DEFAULT '',
    expires_at timestamptz,
    PRIMARY KEY (channel, key)
);
CREATE INDEX {p}_map_state_expires_at ON {p}_map_state (expires_at) WHERE expires_at IS NOT NULL;

-- The channel's meta row under the shard lock the caller holds, created (a new epoch, its
-- changes and entries dropped) when missing or expired; its settings and deadline refreshed.
-- NULL settings keep the stored ones (an application call), or take the defaults of a new row.
CREATE FUNCTION {p}_map_position(p_channel text, p_stream_size integer, p_stream_ttl_ms bigint,
                                 p_meta_ttl_ms bigint, p_key_ttl_ms bigint, p_new_epoch text)
RETURNS {p}_map_meta
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_meta {p}_map_meta%ROWTYPE;
BEGIN
    SELECT * INTO v_meta FROM {p}_map_meta m WHERE m.channel = p_channel;
    IF NOT FOUND OR v_meta.expires_at <= v_now THEN
        DELETE FROM {p}_map_stream s WHERE s.channel = p_channel;
        DELETE FROM {p}_map_state s WHERE s.channel = p_channel;
        INSERT INTO {p}_map_meta AS m (channel, epoch, top, stream_size, stream_ttl_ms,
                                       meta_ttl_ms, key_ttl_ms, stream_expires_at, expires_at)
        VALUES (p_channel, coalesce(nullif(p_new_epoch, ''), {p}_new_epoch()), 0,
                coalesce(p_stream_size, 100), coalesce(p_stream_ttl_ms, 60000),
                coalesce(p_meta_ttl_ms, 0), coalesce(p_key_ttl_ms, 0), v_now, NULL)
        ON CONFLICT (channel) DO UPDATE
            SET epoch = excluded.epoch, top = 0, num_keys = 0, stream_size = excluded.stream_size,
                stream_ttl_ms = excluded.stream_ttl_ms, meta_ttl_ms = excluded.meta_ttl_ms,
                key_ttl_ms = excluded.key_ttl_ms, stream_expires_at = excluded.stream_expires_at,
                expires_at = NULL
        RETURNING * INTO v_meta;
    END IF;
    UPDATE {p}_map_meta m
    SET stream_size = coalesce(p_stream_size, m.stream_size),
        stream_ttl_ms = coalesce(p_stream_ttl_ms, m.stream_ttl_ms),
        meta_ttl_ms = coalesce(p_meta_ttl_ms, m.meta_ttl_ms),
        key_ttl_ms = coalesce(p_key_ttl_ms, m.key_ttl_ms),
        expires_at = CASE WHEN coalesce(p_meta_ttl_ms, m.meta_ttl_ms) > 0
                          THEN v_now + coalesce(p_meta_ttl_ms, m.meta_ttl_ms) * interval '1 millisecond'
                          ELSE NULL END
    WHERE m.channel = p_channel
    RETURNING * INTO v_meta;
    RETURN v_meta;
END
$$;

-- Appends a change of the channel (under its shard lock) to its stream when it has one and to
-- the outbox; returns its offset (0 without a stream).
CREATE FUNCTION {p}_map_change(p_shard integer, p_meta {p}_map_meta, p_key text,
                               p_removed boolean, p_data bytea, p_info bytea, p_tags jsonb,
                               p_prev_data bytea, p_prev_info bytea, p_prev_tags jsonb)
RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_offset bigint := 0;
    v_seq bigint;
BEGIN
    IF p_meta.stream_size > 0 THEN
        IF p_meta.stream_expires_at <= v_now THEN
            DELETE FROM {p}_map_stream s WHERE s.channel = p_meta.channel;
        END IF;
        v_offset := p_meta.top + 1;
        UPDATE {p}_map_meta m
        SET top = v_offset,
            stream_expires_at = v_now + p_meta.stream_ttl_ms * interval '1 millisecond'
        WHERE m.channel = p_meta.channel;
        INSERT INTO {p}_map_stream (channel, "offset", key, removed, data, info, tags)
        VALUES (p_meta.channel, v_offset, p_key, p_removed, p_data, p_info, p_tags);
        DELETE FROM {p}_map_stream s
        WHERE s.channel = p_meta.channel AND s."offset" <= v_offset - p_meta.stream_size;
    END IF;
    UPDATE {p}_shard SET seq = seq + 1 WHERE shard = p_shard RETURNING seq INTO v_seq;
    INSERT INTO {p}_outbox (shard, seq, kind, channel, "offset", epoch, data, info, tags,
                            prev_data, prev_info, prev_tags, map_key, removed)
    VALUES (p_shard, v_seq, 'p', p_meta.channel, v_offset, p_meta.epoch, p_data, p_info, p_tags,
            p_prev_data, p_prev_info, p_prev_tags, p_key, p_removed);
    PERFORM pg_notify('{p}_outbox', p_shard::text);
    RETURN v_offset;
END
$$;

-- A write the map storage runs (and `{p}_map_publish` / `{p}_map_remove` wrap). Status 0
-- written, 1 idempotent (the earlier result), 2 stale version, 3 key exists, 4 key not found,
-- 5 too many keys.
CREATE FUNCTION {p}_map_write(p_channel text, p_key text, p_removing boolean, p_data bytea,
                              p_info bytea, p_tags jsonb, p_stream_size integer,
                              p_stream_ttl_ms bigint, p_meta_ttl_ms bigint, p_key_ttl_ms bigint,
                              p_new_epoch text, p_key_mode text, p_refresh_ttl boolean,
                              p_version bigint, p_version_epoch text, p_want_prev boolean,
                              p_idempotency_key text, p_idempotency_ttl_ms bigint,
                              p_max_keys bigint)
RETURNS TABLE (out_status integer, out_offset bigint, out_epoch text)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_shard integer := {p}_shard_of(p_channel);
    v_now timestamptz := clock_timestamp();
    v_meta {p}_map_meta%ROWTYPE;
    v_old {p}_map_state%ROWTYPE;
    v_offset bigint;
    v_epoch text;
    v_expires timestamptz;
BEGIN
    PERFORM 1 FROM {p}_shard WHERE shard = v_shard FOR UPDATE;
    IF coalesce(p_idempotency_key, '') <> '' THEN
        SELECT i."offset", i.epoch INTO v_offset, v_epoch FROM {p}_idempotency i
        WHERE i.channel = p_channel AND i.key = p_idempotency_key AND i.expires_at > v_now;
        IF FOUND THEN
            RETURN QUERY SELECT 1, v_offset, v_epoch;
            RETURN;
        END IF;
    END IF;
    v_meta := {p}_map_position(p_channel, p_stream_size, p_stream_ttl_ms, p_meta_ttl_ms,
                               p_key_ttl_ms, p_new_epoch);
    SELECT * INTO v_old FROM {p}_map_state s WHERE s.channel = p_channel AND s.key = p_key;
    IF p_removing THEN
        IF NOT FOUND THEN
            RETURN QUERY SELECT 4, v_meta.top, v_meta.epoch;
            RETURN;
        END IF;
    ELSIF FOUND THEN
        IF p_version > 0 AND v_old.version > 0
           AND (coalesce(p_version_epoch, '') = '' OR p_version_epoch = v_old.version_epoch)
           AND p_version <= v_old.version THEN
            RETURN QUERY SELECT 2, v_meta.top, v_meta.epoch;
            RETURN;
        END IF;
        IF p_key_mode = 'if_new' THEN
            IF p_refresh_ttl AND v_meta.key_ttl_ms > 0 THEN
                UPDATE {p}_map_state s
                SET expires_at = v_now + v_meta.key_ttl_ms * interval '1 millisecond'
                WHERE s.channel = p_channel AND s.key = p_key;
            END IF;
            RETURN QUERY SELECT 3, v_meta.top, v_meta.epoch;
            RETURN;
        END IF;
    ELSE
        IF p_key_mode = 'if_exists' THEN
            RETURN QUERY SELECT 4, v_meta.top, v_meta.epoch;
            RETURN;
        END IF;
        IF v_meta.num_keys >= p_max_keys THEN
            RETURN QUERY SELECT 5, v_meta.top, v_meta.epoch;
            RETURN;
        END IF;
    END IF;
    IF p_removing THEN
        v_offset := {p}_map_change(v_shard, v_meta, p_key, true, ''::bytea, NULL, v_old.tags,
                                   NULL, NULL, NULL);
        DELETE FROM {p}_map_state s WHERE s.channel = p_channel AND s.key = p_key;
        UPDATE {p}_map_meta m SET num_keys = m.num_keys - 1 WHERE m.channel = p_channel;
    ELSE
        IF v_old.key IS NULL THEN
            UPDATE {p}_map_meta m SET num_keys = m.num_keys + 1 WHERE m.channel = p_channel;
        END IF;
        IF p_want_prev AND v_meta.stream_size > 0 AND v_old.key IS NOT NULL THEN
            v_offset := {p}_map_change(v_shard, v_meta, p_key, false, p_data, p_info, p_tags,
                                       v_old.data, v_old.info, v_old.tags);
        ELSE
            v_offset := {p}_map_change(v_shard, v_meta, p_key, false, p_data, p_info, p_tags,
                                       NULL, NULL, NULL);
        END IF;
        v_expires := CASE WHEN v_meta.key_ttl_ms > 0
                          THEN v_now + v_meta.key_ttl_ms * interval '1 millisecond' END;
        INSERT INTO {p}_map_state AS s (channel, key, "offset", data, info, tags, version,
                                        version_epoch, expires_at)
        VALUES (p_channel, p_key, v_offset, p_data, p_info, p_tags, coalesce(p_version, 0),
                coalesce(p_version_epoch, ''), v_expires)
        ON CONFLICT (channel, key) DO UPDATE
            SET "offset" = excluded."offset", data = excluded.data, info = excluded.info,
                tags = excluded.tags, expires_at = excluded.expires_at,
                -- An unversioned write keeps the key's version.
                version = CASE WHEN excluded.version > 0 THEN excluded.version ELSE s.version END,
                version_epoch = CASE WHEN excluded.version > 0 THEN excluded.version_epoch
                                     ELSE s.version_epoch END;
    END IF;
    IF coalesce(p_idempotency_key, '') <> '' THEN
        INSERT INTO {p}_idempotency AS i (channel, key, "offset", epoch, expires_at)
        VALUES (p_channel, p_idempotency_key, v_offset, v_meta.epoch,
                v_now + p_idempotency_ttl_ms * interval '1 millisecond')
        ON CONFLICT (channel, key) DO UPDATE
            SET "offset" = excluded."offset", epoch = excluded.epoch,
                expires_at = excluded.expires_at;
    END IF;
    RETURN QUERY SELECT 0, v_offset, v_meta.epoch;
END
$$;

-- A state page: entries after `p_after` (NULL: from the first) in key order, at most `p_limit`
-- (+1, so the caller knows whether more follow), or the one `p_key`. One row per entry, or one
-- row with a NULL key when none; every row carries the position.
CREATE FUNCTION {p}_map_state_page(p_channel text, p_stream_size integer,
                                   p_stream_ttl_ms bigint, p_meta_ttl_ms bigint,
                                   p_key_ttl_ms bigint, p_new_epoch text, p_after text,
                                   p_limit bigint, p_key text)
RETURNS TABLE (out_top bigint, out_epoch text, out_key text, out_offset bigint, out_data bytea,
               out_info bytea, out_tags jsonb)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_meta {p}_map_meta%ROWTYPE;
BEGIN
    PERFORM 1 FROM {p}_shard WHERE shard = {p}_shard_of(p_channel) FOR UPDATE;
    v_meta := {p}_map_position(p_channel, p_stream_size, p_stream_ttl_ms, p_meta_ttl_ms,
                               p_key_ttl_ms, p_new_epoch);
    IF p_key IS NOT NULL THEN
        RETURN QUERY SELECT v_meta.top, v_meta.epoch, s.key::text, s."offset", s.data, s.info, s.tags
        FROM {p}_map_state s WHERE s.channel = p_channel AND s.key = p_key;
        IF FOUND THEN
            RETURN;
        END IF;
    ELSIF p_limit > 0 THEN
        RETURN QUERY SELECT v_meta.top, v_meta.epoch, s.key::text, s."offset", s.data, s.info, s.tags
        FROM {p}_map_state s
        WHERE s.channel = p_channel AND (p_after IS NULL OR s.key > p_after COLLATE "C")
        ORDER BY s.key
        LIMIT p_limit + 1;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT v_meta.top, v_meta.epoch, NULL::text, NULL::bigint, NULL::bytea,
                        NULL::bytea, NULL::jsonb;
END
$$;

-- Reads a map's change stream as `{p}_history` reads a channel's.
CREATE FUNCTION {p}_map_history(p_channel text, p_stream_size integer, p_stream_ttl_ms bigint,
                                p_meta_ttl_ms bigint, p_key_ttl_ms bigint, p_new_epoch text,
                                p_since bigint, p_limit bigint, p_reverse boolean)
RETURNS TABLE (out_top bigint, out_epoch text, out_offset bigint, out_key text,
               out_removed boolean, out_data bytea, out_info bytea, out_tags jsonb)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_meta {p}_map_meta%ROWTYPE;
BEGIN
    PERFORM 1 FROM {p}_shard WHERE shard = {p}_shard_of(p_channel) FOR UPDATE;
    v_meta := {p}_map_position(p_channel, p_stream_size, p_stream_ttl_ms, p_meta_ttl_ms,
                               p_key_ttl_ms, p_new_epoch);
    IF p_limit <> 0 AND v_meta.stream_expires_at > v_now THEN
        IF p_reverse THEN
            RETURN QUERY SELECT v_meta.top, v_meta.epoch, s."offset", s.key, s.removed, s.data,
                                s.info, s.tags
            FROM {p}_map_stream s
            WHERE s.channel = p_channel AND (p_since < 0 OR s."offset" < p_since)
            ORDER BY s."offset" DESC
            LIMIT CASE WHEN p_limit < 0 THEN NULL ELSE p_limit END;
        ELSE
            RETURN QUERY SELECT v_meta.top, v_meta.epoch, s."offset", s.key, s.removed, s.data,
                                s.info, s.tags
            FROM {p}_map_stream s
            WHERE s.channel = p_channel AND (p_since < 0 OR s."offset" > p_since)
            ORDER BY s."offset"
            LIMIT CASE WHEN p_limit < 0 THEN NULL ELSE p_limit END;
        END IF;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT v_meta.top, v_meta.epoch, NULL::bigint, NULL::text, NULL::boolean,
                        NULL::bytea, NULL::bytea, NULL::jsonb;
END
$$;

-- Removes the due entries of one shard's channels (at most `p_limit`), each appended and
-- delivered as a removal; returns how many. One shard per call: it holds one shard lock.
CREATE FUNCTION {p}_map_expire(p_shard integer, p_limit integer)
RETURNS integer
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_row record;
    v_meta {p}_map_meta%ROWTYPE;
    v_count integer := 0;
BEGIN
    PERFORM 1 FROM {p}_shard WHERE shard = p_shard FOR UPDATE;
    FOR v_row IN
        SELECT s.channel, s.key, s.tags FROM {p}_map_state s
        WHERE s.expires_at <= v_now AND {p}_shard_of(s.channel) = p_shard
        ORDER BY s.expires_at
        LIMIT p_limit
    LOOP
        v_meta := {p}_map_position(v_row.channel, NULL, NULL, NULL, NULL, NULL);
        PERFORM {p}_map_change(p_shard, v_meta, v_row.key, true, ''::bytea, NULL, v_row.tags,
                               NULL, NULL, NULL);
        DELETE FROM {p}_map_state s WHERE s.channel = v_row.channel AND s.key = v_row.key;
        UPDATE {p}_map_meta m SET num_keys = m.num_keys - 1 WHERE m.channel = v_row.channel;
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;

-- Forgets a map channel: its next access starts a new epoch.
CREATE FUNCTION {p}_map_clear(p_channel text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM 1 FROM {p}_shard WHERE shard = {p}_shard_of(p_channel) FOR UPDATE;
    DELETE FROM {p}_map_meta m WHERE m.channel = p_channel;
    DELETE FROM {p}_map_stream s WHERE s.channel = p_channel;
    DELETE FROM {p}_map_state s WHERE s.channel = p_channel;
END
$$;

-- What an application calls inside its own transaction (as Centrifugo's `cf_map_publish`): the
-- change commits (and is delivered) with the application's writes, or not at all. The map's
-- settings are the ones the core stored for the channel (defaults for a channel it never
-- touched: 100 changes for a minute, entries without expiry); `p_key_ttl` / `p_meta_ttl`
-- override them. `p_key_mode`: NULL, `if_new` or `if_exists`.
CREATE FUNCTION {p}_map_publish(p_channel text, p_key text, p_data bytea,
                                p_tags jsonb DEFAULT NULL, p_key_ttl interval DEFAULT NULL,
                                p_meta_ttl interval DEFAULT NULL, p_key_mode text DEFAULT NULL,
                                p_idempotency_key text DEFAULT NULL)
RETURNS TABLE (channel_offset bigint, epoch text, suppressed boolean, suppress_reason text)
LANGUAGE sql SET search_path FROM CURRENT AS $$
    SELECT r.out_offset, r.out_epoch, r.out_status <> 0,
           CASE r.out_status WHEN 0 THEN '' WHEN 1 THEN 'idempotency' WHEN 2 THEN 'version'
                             WHEN 3 THEN 'key_exists' WHEN 4 THEN 'key_not_found'
                             ELSE 'too_many_keys' END
    FROM {p}_map_write($1, $2, false, $3, NULL, $4, NULL, NULL,
                       (extract(epoch FROM $6) * 1000)::bigint,
                       (extract(epoch FROM $5) * 1000)::bigint,
                       NULL, $7, false, 0, '', false, $8, 300000, 1048576) AS r
$$;

-- The same with JSON data (stored as its text, as the server API's `data`).
CREATE FUNCTION {p}_map_publish(p_channel text, p_key text, p_data jsonb,
                                p_tags jsonb DEFAULT NULL, p_key_ttl interval DEFAULT NULL,
                                p_meta_ttl interval DEFAULT NULL, p_key_mode text DEFAULT NULL,
                                p_idempotency_key text DEFAULT NULL)
RETURNS TABLE (channel_offset bigint, epoch text, suppressed boolean, suppress_reason text)
LANGUAGE sql SET search_path FROM CURRENT AS $$
    SELECT * FROM {p}_map_publish($1, $2, convert_to($3::text, 'UTF8'), $4, $5, $6, $7, $8)
$$;

-- Removes a key inside the application's transaction.
CREATE FUNCTION {p}_map_remove(p_channel text, p_key text, p_idempotency_key text DEFAULT NULL)
RETURNS TABLE (channel_offset bigint, epoch text, suppressed boolean, suppress_reason text)
LANGUAGE sql SET search_path FROM CURRENT AS $$
    SELECT r.out_offset, r.out_epoch, r.out_status <> 0,
           CASE r.out_status WHEN 0 THEN '' WHEN 1 THEN 'idempotency' ELSE 'key_not_found' END
    FROM {p}_map_write($1, $2, true, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                       false, 0, '', false, $3, 300000, 1048576) AS r
$$;
