//! The Lua scripts of Redis map storage ([`super::maps`]): a write, a state page, the expiry of
//! one channel's due keys, and the compare-and-set of the expiry index. Each runs atomically
//! on the channel's slot and starts, like the broker's, with `continuity_lua!` (epochs renew
//! when continuity cannot be proven, `scripts.rs` says why).
//!
//! A removal (written or expired) is delivered as a publication built here: the protobuf
//! encoding of `Publication{key (11), removed (12)}` followed by the entry's stored tags
//! encoding (`Publication{tags}`): concatenated protobuf messages merge, so the removal
//! carries the tags its entry had and tags filters route it.

/// Defines `removal(key, tags)` (the encoded removal publication), `now_ms()` (the server's
/// clock) and `keep_alive(keys, ttl)` (`pexpire` each, or nothing when ttl is 0: persistent).
macro_rules! map_lua {
    () => {
        r#"
local function varint(n)
  local out = {}
  repeat
    local byte = n % 128
    n = math.floor(n / 128)
    if n > 0 then byte = byte + 128 end
    table.insert(out, string.char(byte))
  until n == 0
  return table.concat(out)
end
local function removal(key, tags)
  return string.char(0x5a) .. varint(string.len(key)) .. key .. string.char(0x60, 1) .. tags
end
local function now_ms()
  local t = redis.call('time')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function keep_alive(keys, ttl)
  if ttl > 0 then
    for _, k in ipairs(keys) do redis.call('pexpire', k, ttl) end
  end
end
local function drop_entry(state, keys, exp, tags, ver, key)
  redis.call('hdel', state, key)
  redis.call('zrem', keys, key)
  redis.call('zrem', exp, key)
  redis.call('hdel', tags, key)
  redis.call('hdel', ver, key)
end
"#
    };
}

/// KEYS: meta, stream, state, keys, exp, tags, ver, idem. ARGV: pubsub channel, key, payload,
/// tags encoding, removal (0/1), stream size (0 = no stream), stream ttl ms, meta ttl ms (0 =
/// never), key ttl ms (0 = never), new epoch, key mode (`""`, `if_new`, `if_exists`), refresh
/// TTL on suppress (0/1), version, version epoch, want prev (0/1), use idempotency (0/1),
/// idempotency ttl ms, publish command, max keys.
/// Returns {status, offset, epoch, expire at ms}: status 0 written, 1 idempotent, 2 stale
/// version, 3 key exists, 4 key not found, 5 too many keys.
pub(super) const MAP_WRITE_LUA: &str = concat!(
    continuity_lua!(),
    map_lua!(),
    r#"
local meta, stream, state, keys, exp, tags, ver, idem =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local channel, key, payload, tagbytes = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local removing = ARGV[5] == '1'
local size, stream_ttl = tonumber(ARGV[6]), ARGV[7]
local meta_ttl, key_ttl = tonumber(ARGV[8]), tonumber(ARGV[9])
local version, version_epoch = tonumber(ARGV[13]), ARGV[14]
if ARGV[16] == '1' then
  local earlier = redis.call('get', idem)
  if earlier then
    local sep = string.find(earlier, ':', 1, true)
    return {1, tonumber(string.sub(earlier, 1, sep - 1)), string.sub(earlier, sep + 1), 0}
  end
end
local epoch, top = channel_position(meta, stream, ARGV[10])
local everything = {meta, state, keys, exp, tags, ver}
local old = redis.call('hget', state, key)
if removing then
  if not old then
    keep_alive({meta}, meta_ttl)
    return {4, top, epoch, 0}
  end
else
  if old and version > 0 then
    local stored = redis.call('hget', ver, key)
    if stored then
      local sep = string.find(stored, ',', 1, true)
      local current = tonumber(string.sub(stored, 1, sep - 1))
      local current_epoch = string.sub(stored, sep + 1)
      if current > 0 and (version_epoch == '' or version_epoch == current_epoch)
        and version <= current then
        keep_alive({meta}, meta_ttl)
        return {2, top, epoch, 0}
      end
    end
  end
  if old and ARGV[11] == 'if_new' then
    local at = 0
    if ARGV[12] == '1' and key_ttl > 0 then
      at = now_ms() + key_ttl
      redis.call('zadd', exp, at, key)
      keep_alive(everything, meta_ttl)
    end
    return {3, top, epoch, at}
  end
  if not old and ARGV[11] == 'if_exists' then
    return {4, top, epoch, 0}
  end
  if not old and redis.call('hlen', state) >= tonumber(ARGV[19]) then
    return {5, top, epoch, 0}
  end
end
local prev = ''
if ARGV[15] == '1' and old and size > 0 then
  prev = string.sub(old, string.find(old, ',', 1, true) + 1)
end
local change = payload
if removing then
  change = removal(key, redis.call('hget', tags, key) or '')
end
local offset = 0
if size > 0 then
  offset = redis.call('hincrby', meta, 's', 1)
  redis.call('rpush', stream, change)
  redis.call('ltrim', stream, -size, -1)
  redis.call('pexpire', stream, stream_ttl)
end
local at = 0
if removing then
  drop_entry(state, keys, exp, tags, ver, key)
else
  redis.call('hset', state, key, offset .. ',' .. payload)
  redis.call('zadd', keys, 0, key)
  if tagbytes ~= '' then redis.call('hset', tags, key, tagbytes) else redis.call('hdel', tags, key) end
  if version > 0 then redis.call('hset', ver, key, version .. ',' .. version_epoch) end
  if key_ttl > 0 then
    at = now_ms() + key_ttl
    redis.call('zadd', exp, at, key)
  end
end
keep_alive(everything, meta_ttl)
if ARGV[16] == '1' then
  redis.call('set', idem, offset .. ':' .. epoch, 'px', ARGV[17])
end
redis.call(ARGV[18], channel, 'p' .. offset .. ',' .. epoch .. ',' .. string.len(prev) .. ',' .. prev .. change)
return {0, offset, epoch, at}
"#
);

/// KEYS: meta, stream, state, keys. ARGV: meta ttl ms (0 = never), new epoch, after key
/// (`""` = from the first), limit (> 0), one key (`""` = a page), revision epoch (`""` = any).
/// Returns {top, epoch, more (0/1; -1 = the revision's epoch is not the map's), key, value,
/// ...} where each value is `<offset>,<encoded publication>`.
pub(super) const MAP_STATE_LUA: &str = concat!(
    continuity_lua!(),
    map_lua!(),
    r#"
local meta, stream, state, keys = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local epoch, top = channel_position(meta, stream, ARGV[2])
keep_alive({meta}, tonumber(ARGV[1]))
if ARGV[6] ~= '' and ARGV[6] ~= epoch then
  return {top, epoch, -1}
end
if ARGV[5] ~= '' then
  local value = redis.call('hget', state, ARGV[5])
  if value then return {top, epoch, 0, ARGV[5], value} end
  return {top, epoch, 0}
end
local limit = tonumber(ARGV[4])
local from = '-'
if ARGV[3] ~= '' then from = '(' .. ARGV[3] end
local page = redis.call('zrangebylex', keys, from, '+', 'LIMIT', 0, limit + 1)
local more = 0
if #page > limit then
  more = 1
  table.remove(page)
end
local result = {top, epoch, more}
if #page > 0 then
  local values = redis.call('hmget', state, unpack(page))
  for i, k in ipairs(page) do
    table.insert(result, k)
    table.insert(result, values[i] or '')
  end
end
return result
"#
);

/// KEYS: meta, stream, state, keys, exp, tags, ver. ARGV: pubsub channel, stream size (0 = no
/// stream), stream ttl ms, meta ttl ms (0 = never), new epoch, publish command, most keys
/// to expire. Removes the keys whose deadline passed (server clock), each appended to the
/// stream and published as a removal. Returns {removed, next deadline ms or -1}.
pub(super) const MAP_EXPIRE_LUA: &str = concat!(
    continuity_lua!(),
    map_lua!(),
    r#"
local meta, stream, state, keys, exp, tags, ver =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local channel, size, stream_ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local meta_ttl = tonumber(ARGV[4])
local due = redis.call('zrangebyscore', exp, '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[7]))
if #due > 0 then
  local epoch, top = channel_position(meta, stream, ARGV[5])
  for _, key in ipairs(due) do
    local change = removal(key, redis.call('hget', tags, key) or '')
    local offset = 0
    if size > 0 then
      offset = redis.call('hincrby', meta, 's', 1)
      redis.call('rpush', stream, change)
      redis.call('ltrim', stream, -size, -1)
      redis.call('pexpire', stream, stream_ttl)
    end
    drop_entry(state, keys, exp, tags, ver, key)
    redis.call(ARGV[6], channel, 'p' .. offset .. ',' .. epoch .. ',0,' .. change)
  end
  keep_alive({meta, state, keys, exp, tags, ver}, meta_ttl)
end
local next = redis.call('zrange', exp, 0, 0, 'WITHSCORES')
if next[2] then return {#due, tonumber(next[2])} end
return {#due, -1}
"#
);

/// KEYS: the expiry index. ARGV: channel, the score it had when read, the next deadline (-1 =
/// none). Moves the channel to its next deadline (or out of the index) unless a write moved it
/// meanwhile. Returns 1 when applied.
pub(super) const MAP_INDEX_LUA: &str = r#"
local score = redis.call('zscore', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if tonumber(ARGV[3]) < 0 then
  redis.call('zrem', KEYS[1], ARGV[1])
else
  redis.call('zadd', KEYS[1], ARGV[3], ARGV[1])
end
return 1
"#;
