// centrifuge-js map subscriptions against a real spindle binary, JSON and Protobuf: state in
// small pages, live updates after the pages, removal, key expiry, recovery after a cut
// (positioned) and a fresh state after a cut (ephemeral), a position the stream no longer has,
// client publish / remove with permissions, two clients seeing one state, the server API.
// Namespaces: tests/fixtures/spindle.json (map, emap, ttlmap, pmap, umap).
//
//   cd tests/sdk/js && node --test --test-concurrency=1 test/map.test.mjs   (or ../run.sh)

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';

import { Centrifuge as CentrifugeJson } from 'centrifuge';
import { Centrifuge as CentrifugeProtobuf } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';

import { startServer, token, unique } from '../lib/spindle.mjs';
import { gate } from '../lib/gate.mjs';
import { record, waitFor } from '../lib/wait.mjs';

const TEST_TIMEOUT_MS = 60000;
const WAIT_MS = 8000;
const QUIET_MS = 300;
const CLIENT_EVENTS = ['connecting', 'connected', 'disconnected', 'error'];
const MAP_EVENTS = ['subscribing', 'subscribed', 'unsubscribed', 'sync', 'update', 'error'];

function harness(t, format) {
  const clients = [];
  const servers = [];
  const h = {
    dec: (v) => {
      if (v === undefined) return undefined;
      if (format !== 'protobuf') return v;
      assert.ok(v instanceof Uint8Array, `protobuf payloads are bytes, got ${inspect(v)}`);
      if (v.length === 0) return undefined;
      return JSON.parse(new TextDecoder().decode(v));
    },
    enc: (v) => (format === 'protobuf' ? new TextEncoder().encode(JSON.stringify(v)) : v),
    async server(patch) {
      const s = await startServer({ patch });
      servers.push(s);
      return s;
    },
    async connected(server, user, options = {}) {
      const Impl = format === 'protobuf' ? CentrifugeProtobuf : CentrifugeJson;
      const c = new Impl(server.url, {
        websocket: WebSocket,
        token: token(user),
        minReconnectDelay: 100,
        maxReconnectDelay: 300,
        ...options,
      });
      const rec = record(c, CLIENT_EVENTS);
      clients.push(c);
      c.connect();
      await waitFor(() => rec.count('connected') >= 1, `${user} to connect`, WAIT_MS, rec);
      return { c, rec };
    },
    // A map subscription that keeps the app's view of the map: `state` (key → decoded data),
    // rebuilt on every `sync`, changed by every `update`.
    async synced(c, channel, options = {}) {
      const sub = c.newMapSubscription(channel, { minResubscribeDelay: 100, maxResubscribeDelay: 300, ...options });
      const rec = record(sub, MAP_EVENTS);
      const state = new Map();
      sub.on('sync', ({ entries }) => {
        state.clear();
        for (const e of entries) state.set(e.key, h.dec(e.data));
      });
      sub.on('update', (u) => {
        if (u.removed) state.delete(u.key);
        else state.set(u.key, h.dec(u.data));
      });
      sub.subscribe();
      await waitFor(() => rec.count('subscribed') >= 1 || rec.count('unsubscribed') >= 1, `synced to ${channel}`, WAIT_MS, rec);
      assert.equal(sub.state, 'subscribed', `${channel}: ${inspect(rec.events, { depth: 4 })}`);
      return { sub, rec, state };
    },
  };
  t.after(async () => {
    for (const c of clients) {
      try { c.disconnect(); } catch { /* ignore */ }
    }
    for (const s of servers) {
      try { await s.stop(); } catch { s.kill(); }
    }
  });
  return h;
}

// The whole state as the server API reads it: key → data.
async function serverState(server, channel) {
  const out = new Map();
  let cursor = '';
  for (let pages = 0; pages < 1000; pages++) {
    const page = await server.apiOk('map_read_state', { channel, cursor, limit: 7 });
    for (const e of page.entries ?? []) out.set(e.key, e.data);
    cursor = page.cursor ?? '';
    if (!cursor) return out;
  }
  throw new Error('map_read_state did not end');
}

const put = (server, channel, key, data, extra = {}) =>
  server.apiOk('map_publish', { channel, key, data, ...extra });
const seed = async (server, channel, n) => {
  for (let i = 0; i < n; i++) await put(server, channel, `k${String(i).padStart(3, '0')}`, { v: i });
};

for (const format of ['json', 'protobuf']) {
  describe(`centrifuge-js ${format}: map subscriptions`, { concurrency: 1 }, () => {
    test('state in small pages, then live updates and removals', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('map:board');
      await seed(server, channel, 25);
      const { c } = await h.connected(server, 'reader');
      const { rec, state } = await h.synced(c, channel, { pageSize: 4 });
      assert.equal(rec.count('sync'), 1, inspect(rec.events.subscribed));
      assert.equal(rec.events.subscribed[0].recovered, false);
      assert.equal(rec.events.subscribed[0].recoverable, true);
      assert.equal(state.size, 25);
      for (let i = 0; i < 25; i++) assert.deepEqual(state.get(`k${String(i).padStart(3, '0')}`), { v: i });

      await put(server, channel, 'k003', { v: 'changed' });
      await put(server, channel, 'new', { v: 'new' });
      await server.apiOk('map_remove', { channel, key: 'k010' });
      await waitFor(() => rec.count('update') >= 3, 'three updates', WAIT_MS, rec);
      const updates = rec.events.update.map((u) => [u.key, u.removed === true]);
      assert.deepEqual(updates, [['k003', false], ['new', false], ['k010', true]]);
      assert.deepEqual(state.get('k003'), { v: 'changed' });
      assert.equal(state.has('k010'), false);
      assert.deepEqual(state, await serverState(server, channel));
    });

    test('changes made while the pages are read are neither lost nor doubled', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('map:busy');
      await seed(server, channel, 40);
      // Every change touches a key no other change touches (new keys, removals of seeded
      // ones), so a change lost in the hand-over stays visible in the end state.
      let writing = true;
      let written = 0;
      const writer = (async () => {
        for (let n = 0; writing; n++) {
          await put(server, channel, `w${n}`, { v: n });
          if (n % 3 === 0 && n / 3 < 40) await server.apiOk('map_remove', { channel, key: `k${String(n / 3).padStart(3, '0')}` });
          written = n;
        }
      })();
      const { c } = await h.connected(server, 'reader');
      const { state } = await h.synced(c, channel, { pageSize: 2 });
      writing = false;
      await writer;
      assert.ok(written >= 10, `changes made while paging: ${written}`);
      await sleep(QUIET_MS * 2);
      assert.deepEqual(state, await serverState(server, channel));
    });

    test('two clients see the same state', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('map:shared');
      await seed(server, channel, 12);
      const a = await h.synced((await h.connected(server, 'a')).c, channel, { pageSize: 5 });
      await put(server, channel, 'between', { v: 1 });
      const b = await h.synced((await h.connected(server, 'b')).c, channel, { pageSize: 3 });
      await server.apiOk('map_remove', { channel, key: 'k000' });
      await waitFor(() => b.rec.count('update') >= 1 && a.rec.count('update') >= 2, 'the updates', WAIT_MS, a.rec);
      await sleep(QUIET_MS);
      assert.deepEqual(a.state, b.state);
      assert.deepEqual(a.state, await serverState(server, channel));
    });

    test('recovers the changes missed during a cut (positioned map)', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('map:travel');
      await seed(server, channel, 5);
      const g = gate();
      const { c, rec: crec } = await h.connected(server, 'traveller', { websocket: g.WebSocket });
      const { rec, state } = await h.synced(c, channel, { pageSize: 2 });
      g.cut();
      await waitFor(() => c.state === 'connecting', 'the client to notice the cut', WAIT_MS, crec);
      for (let i = 0; i < 10; i++) await put(server, channel, `m${i}`, { v: i });
      await server.apiOk('map_remove', { channel, key: 'k001' });
      g.open = true;
      await waitFor(() => rec.count('subscribed') >= 2, 'the resubscribe', 15000, rec);
      const ctx = rec.events.subscribed[1];
      assert.equal(ctx.recovered, true, inspect(ctx));
      assert.equal(rec.count('sync'), 1, 'recovered as updates, not a new sync');
      await waitFor(() => rec.count('update') >= 11, 'the missed changes', WAIT_MS, rec);
      assert.deepEqual(state, await serverState(server, channel));
      await put(server, channel, 'after', { v: 'live' });
      await waitFor(() => state.has('after'), 'a live change after recovery', WAIT_MS, rec);
    });

    test('an ephemeral map starts over from its state after a cut', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('emap:cursors');
      await seed(server, channel, 3);
      const g = gate();
      const { c, rec: crec } = await h.connected(server, 'pointer', { websocket: g.WebSocket });
      const { rec, state } = await h.synced(c, channel);
      assert.equal(rec.events.subscribed[0].recoverable, false, inspect(rec.events.subscribed[0]));
      g.cut();
      await waitFor(() => c.state === 'connecting', 'the client to notice the cut', WAIT_MS, crec);
      await put(server, channel, 'k000', { v: 'moved' });
      await server.apiOk('map_remove', { channel, key: 'k002' });
      g.open = true;
      await waitFor(() => rec.count('sync') >= 2, 'a second sync', 15000, rec);
      assert.deepEqual(state, new Map([['k000', { v: 'moved' }], ['k001', { v: 1 }]]));
      await put(server, channel, 'k001', { v: 'live' });
      await waitFor(() => state.get('k001')?.v === 'live', 'a live change', WAIT_MS, rec);
    });

    test('a position the stream no longer has starts over from the state', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('pmap:short');
      await seed(server, channel, 3);
      const g = gate();
      const { c, rec: crec } = await h.connected(server, 'late', { websocket: g.WebSocket });
      const { rec, state } = await h.synced(c, channel);
      g.cut();
      await waitFor(() => c.state === 'connecting', 'the client to notice the cut', WAIT_MS, crec);
      // The stream keeps 5 changes: 20 leave the client's position behind.
      for (let i = 0; i < 20; i++) await put(server, channel, `k${String(i % 4).padStart(3, '0')}`, { v: `x${i}` });
      g.open = true;
      await waitFor(() => rec.count('sync') >= 2, 'a fresh sync', 15000, rec);
      const last = rec.events.subscribed[rec.count('subscribed') - 1];
      assert.equal(last.recovered, false, inspect(last));
      assert.deepEqual(state, await serverState(server, channel));
    });

    test('expired keys are removed and the removal delivered', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('ttlmap:typing');
      const { c } = await h.connected(server, 'watcher');
      const { rec, state } = await h.synced(c, channel);
      await put(server, channel, 'alice', { typing: true });
      await waitFor(() => state.has('alice'), 'the entry', WAIT_MS, rec);
      await waitFor(() => rec.events.update.some((u) => u.key === 'alice' && u.removed), 'its expiry (key_ttl 1s)', 5000, rec);
      assert.equal(state.size, 0);
      const stats = await server.apiOk('map_stats', { channel });
      assert.equal(stats.num_keys ?? 0, 0, inspect(stats));
    });

    test('clients publish and remove with permission; others are refused', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('map:edit');
      const { c } = await h.connected(server, 'editor');
      const { sub, rec, state } = await h.synced(c, channel);
      await sub.publish('title', h.enc({ text: 'hello' }));
      await waitFor(() => state.has('title'), 'the echo of our write', WAIT_MS, rec);
      assert.deepEqual(state.get('title'), { text: 'hello' });
      assert.equal(rec.events.update[0].info.user, 'editor', inspect(rec.events.update[0]));
      await sub.remove('title');
      await waitFor(() => !state.has('title'), 'the removal', WAIT_MS, rec);

      // Not subscribed: map.allow_publish_for_subscriber does not cover it.
      const other = await h.connected(server, 'stranger');
      await assert.rejects(other.c.mapPublish(channel, 'x', h.enc({ v: 1 })), (e) => e.code === 103);
      // An ephemeral namespace without publish permissions.
      await assert.rejects(other.c.mapPublish(unique('emap:x'), 'x', h.enc({ v: 1 })), (e) => e.code === 103);
      // A map publish into a stream channel.
      await assert.rejects(other.c.mapPublish(unique('chat:x'), 'x', h.enc({ v: 1 })), (e) => e.code === 107);

      // map.client_key user_id: the key is the user, whatever the client asked for.
      const users = unique('umap:status');
      const watcher = await h.synced(c, users);
      await other.c.mapPublish(users, 'ignored', h.enc({ online: true }));
      await waitFor(() => watcher.state.has('stranger'), 'the entry keyed by user', WAIT_MS, watcher.rec);
      assert.equal(watcher.state.has('ignored'), false);
    });

    test('subscribers feed the map presence channels', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('game:table');
      const watcher = (await h.connected(server, 'watcher')).c;
      const clientsSub = watcher.newMapClientsSubscription(`prescli:${channel}`, { minResubscribeDelay: 100 });
      const usersSub = watcher.newMapUsersSubscription(`presusr:${channel}`, { minResubscribeDelay: 100 });
      const clients = new Map();
      const users = new Set();
      const crec = record(clientsSub, MAP_EVENTS);
      clientsSub.on('sync', ({ entries }) => { clients.clear(); for (const e of entries) clients.set(e.key, e.info); });
      clientsSub.on('update', (u) => { if (u.removed) clients.delete(u.key); else clients.set(u.key, u.info); });
      usersSub.on('sync', ({ entries }) => { users.clear(); for (const e of entries) users.add(e.key); });
      usersSub.on('update', (u) => { if (u.removed) users.delete(u.key); else users.add(u.key); });
      clientsSub.subscribe();
      usersSub.subscribe();
      await waitFor(() => clientsSub.state === 'subscribed' && usersSub.state === 'subscribed', 'the presence maps', WAIT_MS, crec);

      const alice = await h.connected(server, 'alice');
      const aliceSub = alice.c.newSubscription(channel);
      aliceSub.subscribe();
      const bob = await h.connected(server, 'bob');
      const bobSub = bob.c.newSubscription(channel);
      bobSub.subscribe();
      await waitFor(() => clients.size === 2 && users.size === 2, 'two clients and two users', WAIT_MS, crec);
      assert.deepEqual([...users].sort(), ['alice', 'bob']);
      assert.deepEqual([...clients.values()].map((i) => i.user).sort(), ['alice', 'bob']);
      const bobClient = [...clients].find(([, info]) => info.user === 'bob')[0];
      assert.equal(clients.get(bobClient).client, bobClient);

      bobSub.unsubscribe();
      await waitFor(() => !clients.has(bobClient), "bob's connection leaving", WAIT_MS, crec);
      await sleep(QUIET_MS);
      // Users leave only by the presence channel's key_ttl: a reconnect changes nothing.
      assert.ok(users.has('bob'));
      assert.equal(clients.size, 1);
    });

    test("a leaving client's entry goes with map.remove_client_on_unsubscribe", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('cmap:cursors');
      const watcher = await h.synced((await h.connected(server, 'watcher')).c, channel);
      const mover = await h.connected(server, 'mover');
      const moving = await h.synced(mover.c, channel);
      await moving.sub.publish('ignored', h.enc({ x: 1, y: 2 }));
      await waitFor(() => watcher.state.size === 1, "the mover's cursor", WAIT_MS, watcher.rec);
      const [key] = [...watcher.state.keys()];
      assert.notEqual(key, 'ignored', 'keyed by client id (map.client_key)');
      moving.sub.unsubscribe();
      await waitFor(() => watcher.state.size === 0, 'the cursor removed on unsubscribe', WAIT_MS, watcher.rec);
    });

    test('per-key deltas decode to the values written, through pages, catch-up and live', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('dmap:quotes');
      const quote = (ticker, i) => ({ ticker, exchange: 'NASDAQ', note: 'a payload long enough to make deltas pay, é ✓', price: (100 + i / 7).toFixed(4), seq: i });
      const tickers = ['AAPL', 'MSFT', 'GOOG', 'AMZN', 'NVDA'];
      for (const [i, ticker] of tickers.entries()) await put(server, channel, ticker, quote(ticker, i));
      const g = gate();
      const { c, rec: crec } = await h.connected(server, 'trader', { websocket: g.WebSocket });
      const { sub, rec, state } = await h.synced(c, channel, { pageSize: 2, delta: 'fossil' });
      for (let i = 0; i < 10; i++) await put(server, channel, tickers[i % 5], quote(tickers[i % 5], 10 + i));
      await waitFor(() => rec.count('update') >= 10, 'live changes', WAIT_MS, rec);
      // A cut: the missed changes come back in the recovery reply, per key a chain of deltas.
      g.cut();
      await waitFor(() => c.state === 'connecting', 'the client to notice the cut', WAIT_MS, crec);
      for (let i = 0; i < 10; i++) await put(server, channel, tickers[i % 2], quote(tickers[i % 2], 30 + i));
      await server.apiOk('map_remove', { channel, key: 'GOOG' });
      g.open = true;
      await waitFor(() => rec.count('subscribed') >= 2, 'the resubscribe', 15000, rec);
      await waitFor(() => rec.count('update') >= 21, 'the recovered changes', WAIT_MS, rec);
      await put(server, channel, 'GOOG', quote('GOOG', 99));
      await waitFor(() => state.has('GOOG'), 'GOOG back', WAIT_MS, rec);
      await sleep(QUIET_MS);
      const expected = new Map([...(await serverState(server, channel))].map(([k, v]) => [k, v]));
      assert.deepEqual(state, expected);
      const stats = sub.deltaStats();
      assert.ok(stats.numDeltaPayloads >= 10, `deltas were used: ${inspect(stats)}`);
      assert.ok(stats.bytesReceived < stats.bytesDecoded, inspect(stats));
    });

    test('a tags filter selects entries, changes and removals', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('tmap:tasks');
      for (let i = 0; i < 8; i++) {
        await put(server, channel, `t${i}`, { i }, { tags: { team: i % 2 ? 'ops' : 'dev' } });
      }
      const { c } = await h.connected(server, 'dev-lead');
      const { rec, state } = await h.synced(c, channel, { pageSize: 3, tagsFilter: { key: 'team', cmp: 'eq', val: 'dev' } });
      assert.deepEqual([...state.keys()].sort(), ['t0', 't2', 't4', 't6']);
      await put(server, channel, 'x-ops', { i: 'ops' }, { tags: { team: 'ops' } });
      await put(server, channel, 'x-dev', { i: 'dev' }, { tags: { team: 'dev' } });
      await server.apiOk('map_remove', { channel, key: 't2' });
      await server.apiOk('map_remove', { channel, key: 't3' });
      await waitFor(() => rec.count('update') >= 2, 'the dev changes', WAIT_MS, rec);
      await sleep(QUIET_MS);
      assert.deepEqual(rec.events.update.map((u) => [u.key, u.removed === true]), [['x-dev', false], ['t2', true]]);
    });

    test('publish_debounce: the first write at once, then the latest per interval', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('slowmap:slider');
      const watcher = await h.synced((await h.connected(server, 'watcher')).c, channel);
      const { sub } = await h.synced((await h.connected(server, 'dragger')).c, channel);
      for (let i = 0; i < 20; i++) {
        await sub.publish('volume', h.enc({ v: i }));
        await sleep(10);
      }
      await waitFor(() => watcher.state.get('volume')?.v === 19, 'the last value', WAIT_MS, watcher.rec);
      await sleep(QUIET_MS);
      const seen = watcher.rec.events.update.map((u) => h.dec(u.data).v);
      assert.equal(seen[0], 0, 'the first write goes at once');
      assert.ok(seen.length <= 4, `coalesced: ${inspect(seen)}`);
    });

    test('map_clear makes subscribers start over', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('map:reset');
      await seed(server, channel, 4);
      const { c } = await h.connected(server, 'reader');
      const { rec, state } = await h.synced(c, channel);
      await server.apiOk('map_clear', { channel });
      await put(server, channel, 'fresh', { v: 1 });
      await waitFor(() => rec.count('sync') >= 2, 'a new sync after the clear', 15000, rec);
      await sleep(QUIET_MS);
      assert.deepEqual(state, new Map([['fresh', { v: 1 }]]));
    });
  });
}

describe('server API map methods', { concurrency: 1 }, () => {
  test('pages, positions and errors', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const h = harness(t, 'json');
    const server = await h.server();
    const channel = unique('map:api');
    await seed(server, channel, 5);
    const first = await server.apiOk('map_read_state', { channel, limit: 2 });
    assert.deepEqual(first.entries.map((e) => e.key), ['k000', 'k001']);
    assert.equal(first.offset, 5);
    const second = await server.apiOk('map_read_state', { channel, limit: 2, cursor: first.cursor });
    assert.deepEqual(second.entries.map((e) => e.key), ['k002', 'k003']);
    const foreign = await server.api('map_read_state', { channel: unique('map:other'), cursor: first.cursor });
    assert.equal(foreign.error?.code, 107, inspect(foreign));
    const stale = await server.api('map_read_state', { channel, revision_epoch: 'nope', revision_offset: 1 });
    assert.equal(stale.error?.code, 112, inspect(stale));

    const again = await server.apiOk('map_publish', { channel, key: 'k000', data: { v: 0 }, key_mode: 'if_new' });
    assert.equal(again.suppressed, true);
    assert.equal(again.suppress_reason, 'key_exists');
    const absent = await server.apiOk('map_remove', { channel, key: 'nope' });
    assert.equal(absent.suppress_reason, 'key_not_found');
    const bad = await server.api('map_publish', { channel, key: 'k', data: {}, key_mode: 'sometimes' });
    assert.equal(bad.error?.code, 107);
    const keyless = await server.api('map_publish', { channel, data: {} });
    assert.equal(keyless.error?.code, 107);
    const stream = await server.api('map_publish', { channel: unique('chat:x'), key: 'k', data: {} });
    assert.equal(stream.error?.code, 107);

    const changes = await server.apiOk('map_read_stream', { channel, since_offset: 3, since_epoch: first.epoch, limit: 10 });
    assert.deepEqual(changes.entries.map((e) => [e.key, e.offset]), [['k003', 4], ['k004', 5]]);
    assert.equal((await server.apiOk('map_stats', { channel })).num_keys, 5);
    await server.apiOk('map_clear', { channel });
    assert.equal((await server.apiOk('map_stats', { channel })).num_keys ?? 0, 0);
  });
});
