-- Spindle PostgreSQL broker, schema version 1.
--
-- `{p}` is replaced by `broker.postgres.table_prefix` (default `cf`) before this runs, so
-- several Spindle clusters (or test runs) can share one database. Every function is created
-- with `SET search_path FROM CURRENT`: it finds these tables in the schema that was current
-- when the migration ran, whatever the caller's search_path.
--
-- Ordering: every write that must be delivered (publication, join, leave, control) first
-- locks its shard row in `{p}_shard` (16 shards, chosen by a hash of the channel) and takes
-- the next `seq` of that shard. The lock is held until the writing transaction ends, so
-- within a shard `seq` order is commit order: a reader that has seen `seq` N committed never
-- sees N-1 commit later. Readers therefore poll `seq > last seen` per shard and never skip
-- a row, whether or not a NOTIFY reached them.

CREATE TABLE {p}_shard (
    shard integer PRIMARY KEY,
    seq bigint NOT NULL DEFAULT 0
);
INSERT INTO {p}_shard (shard, seq) SELECT s, 0 FROM generate_series(0, 15) AS s;

-- One row per channel stream: its epoch, top offset, version and deadlines. A missing or
-- expired row means a new epoch: a lost row can never make one (epoch, offset) name two
-- publications.
CREATE TABLE {p}_meta (
    channel text PRIMARY KEY,
    epoch text NOT NULL,
    top bigint NOT NULL DEFAULT 0,
    version bigint NOT NULL DEFAULT 0,
    version_epoch text NOT NULL DEFAULT '',
    -- Publications are readable until then (`history_ttl` after the last publish).
    stream_expires_at timestamptz NOT NULL,
    -- The row itself is valid until then (`history_meta_ttl` after the last publish or read).
    expires_at timestamptz NOT NULL
);
CREATE INDEX {p}_meta_expires_at ON {p}_meta (expires_at);

-- Retained publications: at most `history_size` per channel, all of the meta row's epoch
-- (a new epoch deletes the old rows in the same transaction).
CREATE TABLE {p}_stream (
    channel text NOT NULL,
    "offset" bigint NOT NULL,
    data bytea NOT NULL,
    info bytea,
    tags jsonb,
    PRIMARY KEY (channel, "offset")
);

-- Results of publishes with an idempotency key, for `idempotent_result_ttl`.
CREATE TABLE {p}_idempotency (
    channel text NOT NULL,
    key text NOT NULL,
    "offset" bigint NOT NULL,
    epoch text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (channel, key)
);
CREATE INDEX {p}_idempotency_expires_at ON {p}_idempotency (expires_at);

-- What every node delivers: kind `p` publication, `j` join, `l` leave, `c` control.
CREATE TABLE {p}_outbox (
    shard integer NOT NULL,
    seq bigint NOT NULL,
    kind text NOT NULL,
    channel text NOT NULL,
    "offset" bigint NOT NULL DEFAULT 0,
    epoch text NOT NULL DEFAULT '',
    data bytea NOT NULL,
    info bytea,
    tags jsonb,
    prev_data bytea,
    prev_info bytea,
    prev_tags jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (shard, seq)
);
CREATE INDEX {p}_outbox_created_at ON {p}_outbox (created_at);

CREATE FUNCTION {p}_shard_of(p_channel text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT (hashtextextended(p_channel, 0) & 15)::integer $$;

-- 8 letters, as the epochs Spindle makes itself.
CREATE FUNCTION {p}_new_epoch() RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT string_agg(substr('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ',
                             1 + floor(random() * 52)::integer, 1), '')
    FROM generate_series(1, 8)
$$;

-- Appends a delivery row under the shard lock the caller holds and wakes the listeners
-- (NOTIFY is sent at commit, once per shard per transaction).
CREATE FUNCTION {p}_enqueue(p_shard integer, p_kind text, p_channel text, p_offset bigint,
                            p_epoch text, p_data bytea, p_info bytea, p_tags jsonb,
                            p_prev_data bytea, p_prev_info bytea, p_prev_tags jsonb)
RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_seq bigint;
BEGIN
    UPDATE {p}_shard SET seq = seq + 1 WHERE shard = p_shard RETURNING seq INTO v_seq;
    INSERT INTO {p}_outbox (shard, seq, kind, channel, "offset", epoch, data, info, tags,
                            prev_data, prev_info, prev_tags)
    VALUES (p_shard, v_seq, p_kind, p_channel, p_offset, p_epoch, p_data, p_info, p_tags,
            p_prev_data, p_prev_info, p_prev_tags);
    PERFORM pg_notify('{p}_outbox', p_shard::text);
END
$$;

-- The publish the broker runs (and `{p}_stream_publish` wraps). Status 0 published,
-- 1 suppressed by the idempotency key (the earlier result), 2 stale version (the top).
CREATE FUNCTION {p}_publish(p_channel text, p_data bytea, p_info bytea, p_tags jsonb,
                            p_history_size integer, p_history_ttl_ms bigint,
                            p_meta_ttl_ms bigint, p_new_epoch text, p_version bigint,
                            p_version_epoch text, p_want_prev boolean,
                            p_idempotency_key text, p_idempotency_ttl_ms bigint)
RETURNS TABLE (out_status integer, out_offset bigint, out_epoch text)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_shard integer := {p}_shard_of(p_channel);
    v_now timestamptz := clock_timestamp();
    v_meta {p}_meta%ROWTYPE;
    v_prev {p}_stream%ROWTYPE;
    v_offset bigint := 0;
    v_epoch text := '';
BEGIN
    PERFORM 1 FROM {p}_shard WHERE shard = v_shard FOR UPDATE;
    IF coalesce(p_idempotency_key, '') <> '' THEN
        SELECT i."offset", i.epoch INTO v_offset, v_epoch FROM {p}_idempotency i
        WHERE i.channel = p_channel AND i.key = p_idempotency_key AND i.expires_at > v_now;
        IF FOUND THEN
            RETURN QUERY SELECT 1, v_offset, v_epoch;
            RETURN;
        END IF;
        -- SELECT INTO without a row set them to NULL.
        v_offset := 0;
        v_epoch := '';
    END IF;
    IF p_history_size > 0 THEN
        SELECT * INTO v_meta FROM {p}_meta m WHERE m.channel = p_channel;
        IF NOT FOUND OR v_meta.expires_at <= v_now THEN
            DELETE FROM {p}_stream s WHERE s.channel = p_channel;
            INSERT INTO {p}_meta AS m (channel, epoch, top, version, version_epoch,
                                       stream_expires_at, expires_at)
            VALUES (p_channel, coalesce(nullif(p_new_epoch, ''), {p}_new_epoch()), 0, 0, '',
                    v_now, v_now)
            ON CONFLICT (channel) DO UPDATE
                SET epoch = excluded.epoch, top = 0, version = 0, version_epoch = '',
                    stream_expires_at = excluded.stream_expires_at,
                    expires_at = excluded.expires_at
            RETURNING * INTO v_meta;
        ELSE
            IF p_version > 0 AND v_meta.version > 0
               AND v_meta.version_epoch = coalesce(p_version_epoch, '')
               AND p_version <= v_meta.version THEN
                UPDATE {p}_meta m SET expires_at = v_now + p_meta_ttl_ms * interval '1 millisecond'
                WHERE m.channel = p_channel;
                RETURN QUERY SELECT 2, v_meta.top, v_meta.epoch;
                RETURN;
            END IF;
            IF v_meta.stream_expires_at <= v_now THEN
                DELETE FROM {p}_stream s WHERE s.channel = p_channel;
            ELSIF p_want_prev AND v_meta.top > 0 THEN
                SELECT * INTO v_prev FROM {p}_stream s
                WHERE s.channel = p_channel AND s."offset" = v_meta.top;
            END IF;
        END IF;
        v_offset := v_meta.top + 1;
        v_epoch := v_meta.epoch;
        UPDATE {p}_meta m
        SET top = v_offset,
            version = CASE WHEN p_version > 0 THEN p_version ELSE m.version END,
            version_epoch = CASE WHEN p_version > 0 THEN coalesce(p_version_epoch, '')
                                 ELSE m.version_epoch END,
            stream_expires_at = v_now + p_history_ttl_ms * interval '1 millisecond',
            expires_at = v_now + p_meta_ttl_ms * interval '1 millisecond'
        WHERE m.channel = p_channel;
        INSERT INTO {p}_stream (channel, "offset", data, info, tags)
        VALUES (p_channel, v_offset, p_data, p_info, p_tags);
        DELETE FROM {p}_stream s
        WHERE s.channel = p_channel AND s."offset" <= v_offset - p_history_size;
    END IF;
    IF coalesce(p_idempotency_key, '') <> '' THEN
        INSERT INTO {p}_idempotency AS i (channel, key, "offset", epoch, expires_at)
        VALUES (p_channel, p_idempotency_key, v_offset, v_epoch,
                v_now + p_idempotency_ttl_ms * interval '1 millisecond')
        ON CONFLICT (channel, key) DO UPDATE
            SET "offset" = excluded."offset", epoch = excluded.epoch,
                expires_at = excluded.expires_at;
    END IF;
    PERFORM {p}_enqueue(v_shard, 'p', p_channel, v_offset, v_epoch, p_data, p_info, p_tags,
                        v_prev.data, v_prev.info, v_prev.tags);
    RETURN QUERY SELECT 0, v_offset, v_epoch;
END
$$;

-- A join / leave (`j` / `l`, data = the encoded ClientInfo) or a control message (`c`),
-- ordered with the channel's publications.
CREATE FUNCTION {p}_publish_event(p_kind text, p_channel text, p_data bytea)
RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_shard integer := {p}_shard_of(p_channel);
BEGIN
    PERFORM 1 FROM {p}_shard WHERE shard = v_shard FOR UPDATE;
    PERFORM {p}_enqueue(v_shard, p_kind, p_channel, 0, '', p_data, NULL, NULL,
                        NULL, NULL, NULL);
END
$$;

-- Reads a stream: one row per publication returned (oldest first, newest first when
-- reversed), or one row with a NULL offset when none is. Every row carries the top position.
-- A channel without a (live) meta row gets one: offset 0, a new epoch.
CREATE FUNCTION {p}_history(p_channel text, p_meta_ttl_ms bigint, p_new_epoch text,
                            p_since bigint, p_limit bigint, p_reverse boolean)
RETURNS TABLE (out_top bigint, out_epoch text, out_offset bigint, out_data bytea,
               out_info bytea, out_tags jsonb)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_meta {p}_meta%ROWTYPE;
BEGIN
    PERFORM 1 FROM {p}_shard WHERE shard = {p}_shard_of(p_channel) FOR UPDATE;
    SELECT * INTO v_meta FROM {p}_meta m WHERE m.channel = p_channel;
    IF NOT FOUND OR v_meta.expires_at <= v_now THEN
        DELETE FROM {p}_stream s WHERE s.channel = p_channel;
        INSERT INTO {p}_meta AS m (channel, epoch, top, version, version_epoch,
                                   stream_expires_at, expires_at)
        VALUES (p_channel, coalesce(nullif(p_new_epoch, ''), {p}_new_epoch()), 0, 0, '',
                v_now, v_now + p_meta_ttl_ms * interval '1 millisecond')
        ON CONFLICT (channel) DO UPDATE
            SET epoch = excluded.epoch, top = 0, version = 0, version_epoch = '',
                stream_expires_at = excluded.stream_expires_at,
                expires_at = excluded.expires_at
        RETURNING * INTO v_meta;
    ELSE
        UPDATE {p}_meta m SET expires_at = v_now + p_meta_ttl_ms * interval '1 millisecond'
        WHERE m.channel = p_channel;
    END IF;
    IF p_limit <> 0 AND v_meta.stream_expires_at > v_now THEN
        IF p_reverse THEN
            RETURN QUERY SELECT v_meta.top, v_meta.epoch, s."offset", s.data, s.info, s.tags
            FROM {p}_stream s
            WHERE s.channel = p_channel AND (p_since < 0 OR s."offset" < p_since)
            ORDER BY s."offset" DESC
            LIMIT CASE WHEN p_limit < 0 THEN NULL ELSE p_limit END;
        ELSE
            RETURN QUERY SELECT v_meta.top, v_meta.epoch, s."offset", s.data, s.info, s.tags
            FROM {p}_stream s
            WHERE s.channel = p_channel AND (p_since < 0 OR s."offset" > p_since)
            ORDER BY s."offset"
            LIMIT CASE WHEN p_limit < 0 THEN NULL ELSE p_limit END;
        END IF;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT v_meta.top, v_meta.epoch, NULL::bigint, NULL::bytea, NULL::bytea,
                        NULL::jsonb;
END
$$;

-- Forgets a channel's stream: the next publication starts a new epoch at offset 1.
CREATE FUNCTION {p}_remove_history(p_channel text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM 1 FROM {p}_shard WHERE shard = {p}_shard_of(p_channel) FOR UPDATE;
    DELETE FROM {p}_meta m WHERE m.channel = p_channel;
    DELETE FROM {p}_stream s WHERE s.channel = p_channel;
END
$$;

-- Removes what has expired; the broker runs it every `cleanup_interval`.
CREATE FUNCTION {p}_cleanup(p_outbox_retention_ms bigint) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
BEGIN
    DELETE FROM {p}_stream s WHERE NOT EXISTS (
        SELECT 1 FROM {p}_meta m
        WHERE m.channel = s.channel AND m.expires_at > v_now AND m.stream_expires_at > v_now);
    DELETE FROM {p}_meta m WHERE m.expires_at <= v_now;
    DELETE FROM {p}_idempotency i WHERE i.expires_at <= v_now;
    DELETE FROM {p}_outbox o
    WHERE o.created_at < v_now - p_outbox_retention_ms * interval '1 millisecond';
END
$$;

-- What an application calls inside its own transaction: the publication commits (and is
-- delivered) with the application's writes, or not at all. Arguments after `data` mirror
-- the server API's publish and the channel namespace's history options; with
-- `history_size` 0 the publication gets no offset. Returns the position (offset 0 and an
-- empty epoch without history) and whether the idempotency key suppressed it.
CREATE FUNCTION {p}_stream_publish(channel text, data bytea,
                                   history_size integer DEFAULT 0,
                                   history_ttl interval DEFAULT interval '5 minutes',
                                   history_meta_ttl interval DEFAULT interval '30 days',
                                   idempotency_key text DEFAULT '',
                                   tags jsonb DEFAULT NULL)
RETURNS TABLE ("offset" bigint, epoch text, suppressed boolean)
LANGUAGE sql SET search_path FROM CURRENT AS $$
    SELECT r.out_offset, r.out_epoch, r.out_status <> 0
    FROM {p}_publish($1, $2, NULL, $7, $3,
                     greatest(1, (extract(epoch FROM $4) * 1000)::bigint),
                     greatest(1, (extract(epoch FROM greatest($4, $5)) * 1000)::bigint),
                     NULL, 0, '', false, $6, 300000) AS r
$$;

-- The same with JSON data (stored as its text, as the server API's `data`).
CREATE FUNCTION {p}_stream_publish(channel text, data jsonb,
                                   history_size integer DEFAULT 0,
                                   history_ttl interval DEFAULT interval '5 minutes',
                                   history_meta_ttl interval DEFAULT interval '30 days',
                                   idempotency_key text DEFAULT '',
                                   tags jsonb DEFAULT NULL)
RETURNS TABLE ("offset" bigint, epoch text, suppressed boolean)
LANGUAGE sql SET search_path FROM CURRENT AS $$
    SELECT * FROM {p}_stream_publish($1, convert_to($2::text, 'UTF8'), $3, $4, $5, $6, $7)
$$;
