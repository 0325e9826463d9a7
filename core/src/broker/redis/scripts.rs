//! The Lua scripts of the Redis broker: one publish and one history read, each atomic on the
//! channel's slot.
//!
//! Both start with `continuity_lua!`, which decides the channel's epoch. An epoch is a
//! promise that one (epoch, offset) names one publication, so it is renewed whenever this
//! server cannot prove that its copy of the stream continues the one that handed out the
//! offsets so far:
//! - the meta hash is missing (expired, deleted, or never replicated): a new epoch and an
//!   empty stream, as before;
//! - the meta hash was written under another replication history. Every write of the meta
//!   hash also stores `r`, the server's `master_replid` (`INFO replication`), which a replica
//!   shares with its master and which changes whenever a server becomes a master (promotion
//!   after a failover, `REPLICAOF NO ONE`, any restart, even from an RDB or AOF file). A
//!   promoted replica that lagged holds the meta hash with an older top offset and would hand
//!   out offsets the old master already gave to other publications; a master restarted from a
//!   snapshot or an `everysec` AOF can lose its last writes the same way. So a stored `r`
//!   that differs from the current one means a new epoch.
//!
//! On a replication change the stream and the top offset are kept, under the new epoch: what
//! the server holds is a prefix of the old master's stream (replication is in order), so every
//! entry is a real publication at its offset, and readers who start fresh (the history API, a
//! client without a position) still see it. Only the name of the numbering changes, so a
//! client holding a position of the old epoch gets "unrecoverable" and starts over, instead of
//! an offset that now names another publication. The version (`v`, `ve`) is kept too.
//!
//! A meta hash without `r` (written by a Spindle before this field existed) adopts the current
//! `master_replid`: it cannot tell whether a failover happened since, which is the guarantee
//! those versions gave; renewing instead would reset every channel's epoch (and every
//! client's recovery) once at upgrade, and again whenever an older node in a rolling upgrade
//! recreated a meta hash. From its first write by this version on, a channel is covered.
//!
//! `master_replid` also changes when a master that had no replica (or none for
//! `repl-backlog-ttl`, one hour by default) gets one: a new epoch then, where continuity was in
//! fact intact. Rare, and only costs the affected clients a resubscription without recovery.
//! In a Redis Cluster each shard master has its own `master_replid`; a channel's keys share
//! one hash tag, so the script always reads the one of the node that holds them. After a slot
//! moves to another master, its channels start a new epoch: a false alarm, but a safe one.
//!
//! The cost is one `INFO replication` per script run: about 3.5 µs of Redis time on a publish
//! script of about 16 µs, 9 % fewer single publishes/s through the HTTP API (figures in
//! `docs/brokers.md`). The `master_replid` cannot come from
//! the node instead (read at connection time, passed as an argument): after a failover, the
//! client reconnects and may run queued scripts on the new master before the node has read
//! its id, so they would pass the old id and match the replicated meta hash, which is the very
//! case to catch. Read inside the script, the id is always the one of the server running it.
//! The node checks at connection that it may run INFO ([`check_info_allowed`]).

use super::RedisServer;
use crate::broker::BrokerError;
use fred::prelude::{Client, ClientLike, Value};
use fred::types::InfoKind;

/// Fails with a clear message when the server refuses `INFO replication` to this client (an
/// ACL without `+info`, which `-@dangerous` removes): every script needs it, so every publish
/// and history read would fail later with a less obvious error.
pub(super) async fn check_info_allowed(
    client: &Client,
    server: &RedisServer,
) -> Result<(), BrokerError> {
    match client.info::<Value>(Some(InfoKind::Replication)).await {
        Ok(_) => Ok(()),
        Err(error) => Err(BrokerError::Unavailable(format!(
            "redis {}: INFO replication refused ({error}); Spindle needs it to notice \
             failovers (the user's ACL must allow +info)",
            server.describe()
        ))),
    }
}

/// Defines `channel_position(meta, stream, fresh)` → epoch, top offset, and whether the meta
/// hash existed (its fields `e s r` as they were, or false). Renews the epoch as the module
/// docs say; `fresh` is a new random epoch from the caller.
macro_rules! continuity_lua {
    () => {
        r#"
local function channel_position(meta, stream, fresh)
  local info = redis.call('info', 'replication')
  local at = string.find(info, 'master_replid:', 1, true)
  local replid = at and string.sub(info, at + 14, at + 53) or ''
  local state = redis.call('hmget', meta, 'e', 's', 'r')
  if not state[1] then
    redis.call('del', stream)
    redis.call('hset', meta, 'e', fresh, 's', 0, 'r', replid)
    return fresh, 0, false
  end
  local epoch, top = state[1], tonumber(state[2] or '0')
  if state[3] ~= replid then
    if state[3] then
      if fresh == epoch then
        local first = string.sub(fresh, 1, 1)
        local flipped = string.upper(first)
        if flipped == first then flipped = string.lower(first) end
        fresh = flipped .. string.sub(fresh, 2)
      end
      epoch = fresh
      redis.call('hset', meta, 'e', epoch, 'r', replid)
    else
      redis.call('hset', meta, 'r', replid)
    end
  end
  return epoch, top, state
end
"#
    };
}

/// KEYS: meta, stream, idempotency (or a dummy). ARGV: pubsub channel, payload, history size
/// (0 = no history), ttl ms, meta ttl ms, new epoch, version, version epoch, want prev (0/1),
/// idempotency ttl ms, use idempotency (0/1), publish command (`publish` / `spublish`).
/// Returns {status, offset, epoch}: status 0 published, 1 idempotent, 2 stale version.
pub(super) const PUBLISH_LUA: &str = concat!(
    continuity_lua!(),
    r#"
local meta, stream, idem = KEYS[1], KEYS[2], KEYS[3]
local channel, payload = ARGV[1], ARGV[2]
local size, ttl, meta_ttl = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local version, version_epoch = tonumber(ARGV[7]), ARGV[8]
if ARGV[11] == '1' then
  local earlier = redis.call('get', idem)
  if earlier then
    local sep = string.find(earlier, ':', 1, true)
    return {1, tonumber(string.sub(earlier, 1, sep - 1)), string.sub(earlier, sep + 1)}
  end
end
local offset, epoch, prev = 0, '', ''
if size > 0 then
  local top, state
  epoch, top, state = channel_position(meta, stream, ARGV[6])
  if state and version > 0 then
    local stored = redis.call('hmget', meta, 'v', 've')
    local current = tonumber(stored[1] or '0')
    if current > 0 and stored[2] == version_epoch and version <= current then
      redis.call('pexpire', meta, meta_ttl)
      return {2, top, epoch}
    end
  end
  if ARGV[9] == '1' and top > 0 then
    prev = redis.call('lindex', stream, -1) or ''
  end
  offset = redis.call('hincrby', meta, 's', 1)
  if version > 0 then
    redis.call('hset', meta, 'v', version, 've', version_epoch)
  end
  redis.call('rpush', stream, payload)
  redis.call('ltrim', stream, -size, -1)
  redis.call('pexpire', stream, ttl)
  redis.call('pexpire', meta, meta_ttl)
end
if ARGV[11] == '1' then
  redis.call('set', idem, offset .. ':' .. epoch, 'px', ARGV[10])
end
redis.call(ARGV[12], channel, 'p' .. offset .. ',' .. epoch .. ',' .. string.len(prev) .. ',' .. prev .. payload)
return {0, offset, epoch}
"#
);

/// KEYS: meta, stream. ARGV: meta ttl ms (0 = never expires: persistent map streams), new epoch, since offset (-1 = none), limit (-1 =
/// all), reverse (0/1). Returns {top, epoch, offset of the first item returned, items...}
/// (items oldest first; the caller reverses).
pub(super) const HISTORY_LUA: &str = concat!(
    continuity_lua!(),
    r#"
local meta, stream = KEYS[1], KEYS[2]
local epoch, top = channel_position(meta, stream, ARGV[2])
if ARGV[1] ~= '0' then redis.call('pexpire', meta, ARGV[1]) end
local since, limit, reverse = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local len = redis.call('llen', stream)
local first = top - len + 1
if limit == 0 or len == 0 then
  return {top, epoch, 0}
end
local lo, hi = 0, len - 1
if reverse then
  if since >= 0 then hi = math.min(hi, since - 1 - first) end
  if limit > 0 then lo = math.max(lo, hi - limit + 1) end
else
  if since >= 0 then lo = math.max(lo, since + 1 - first) end
  if limit > 0 then hi = math.min(hi, lo + limit - 1) end
end
if lo > hi then
  return {top, epoch, 0}
end
local result = {top, epoch, first + lo}
for _, item in ipairs(redis.call('lrange', stream, lo, hi)) do
  table.insert(result, item)
end
return result
"#
);
