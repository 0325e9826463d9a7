// centrifuge-js shared-poll subscriptions against a real spindle binary, JSON and Protobuf,
// with a Python backend (tests/sdk/backends/shared_poll.py) answering shared_poll_refresh:
// track / update / untrack, many clients costing the backend one poll per key, revoked keys, a
// forged signature (103) that harms no one else, signature refresh before expiry, keys dropped
// when signatures are not refreshed, reconnect replay without duplicates, versioned channels
// with shared_poll_publish, and fossil deltas per key.
// Namespaces: tests/fixtures/spindle.json (poll: versionless, 300 ms; vpoll: versioned).
//
//   cd tests/sdk/js && node --test --test-concurrency=1 test/shared_poll.test.mjs   (or ../run.sh)

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';
import readline from 'node:readline';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';

import { Centrifuge as CentrifugeJson } from 'centrifuge';
import { Centrifuge as CentrifugeProtobuf } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';

import { gate } from '../lib/gate.mjs';
import { FIXTURE, REPO, startServer, token, unique } from '../lib/spindle.mjs';
import { record, waitFor } from '../lib/wait.mjs';

const TEST_TIMEOUT_MS = 60000;
const WAIT_MS = 8000;
const TRACK_SECRET = FIXTURE.shared_poll.hmac_secret_key;
const SUB_EVENTS = ['subscribing', 'subscribed', 'unsubscribed', 'update', 'error'];

// A track signature as an application backend makes it (docs/shared-poll.md): HMAC-SHA256 over
// iat \0 exp \0 user \0 channel \0 hex(sha256(keys joined by \0)).
function trackSignature(channel, user, keys, ttlSeconds = 300, secret = TRACK_SECRET) {
  const iat = Math.floor(Date.now() / 1000);
  const exp = ttlSeconds > 0 ? iat + ttlSeconds : 0;
  const keysHash = crypto.createHash('sha256').update(keys.join('\0')).digest('hex');
  const mac = crypto.createHmac('sha256', secret)
    .update(`${iat}\0${exp}\0${user}\0${channel}\0${keysHash}`)
    .digest('hex');
  return `${iat}:${exp}:${mac}`;
}

// The Python backend, one per test.
async function startBackend() {
  const script = path.join(REPO, 'tests', 'sdk', 'backends', 'shared_poll.py');
  const child = spawn('python3', [script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the Python backend did not start')), 5000);
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^listening (\d+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => reject(new Error(`the Python backend exited (${code})`)));
  });
  const base = `http://127.0.0.1:${port}`;
  const post = async (p, body) => {
    const res = await fetch(`${base}${p}`, { method: 'POST', body: JSON.stringify(body) });
    assert.equal(res.status, 200, `${p}: ${res.status}`);
  };
  return {
    endpoint: `${base}/refresh`,
    set: (channel, key, data, extra = {}) => post('/set', { channel, key, data, ...extra }),
    remove: (channel, key) => post('/set', { channel, key, removed: true }),
    epoch: (channel, epoch) => post('/epoch', { channel, epoch }),
    calls: async () => (await fetch(`${base}/calls`)).json(),
    stop: () => child.kill(),
  };
}

function harness(t, format) {
  const clients = [];
  const servers = [];
  const backends = [];
  const h = {
    dec: (v) => {
      if (v === null || v === undefined) return v;
      if (format !== 'protobuf') return v;
      assert.ok(v instanceof Uint8Array, `protobuf payloads are bytes, got ${inspect(v)}`);
      return JSON.parse(new TextDecoder().decode(v));
    },
    async setup(patch = {}) {
      const backend = await startBackend();
      backends.push(backend);
      const server = await startServer({
        patch: { channel: { proxy: { shared_poll_refresh: { endpoint: backend.endpoint } } }, ...patch },
      });
      servers.push(server);
      return { backend, server };
    },
    async connected(server, user, websocket = WebSocket) {
      const Impl = format === 'protobuf' ? CentrifugeProtobuf : CentrifugeJson;
      const c = new Impl(server.url, {
        websocket,
        token: token(user),
        minReconnectDelay: 100,
        maxReconnectDelay: 300,
      });
      clients.push(c);
      const rec = record(c, ['connected', 'disconnected']);
      c.connect();
      await waitFor(() => rec.count('connected') >= 1, `${user} to connect`, WAIT_MS, rec);
      return c;
    },
    // A shared-poll subscription keeping the app's view: key → decoded data, and every update.
    async polled(c, channel, user, options = {}) {
      const signatures = [];
      const sub = c.newSharedPollSubscription(channel, {
        minResubscribeDelay: 100,
        maxResubscribeDelay: 300,
        getSignature: async ({ keys }) => {
          signatures.push(keys);
          return { keys, signature: trackSignature(channel, user, keys, options.ttl ?? 300) };
        },
        ...options.sub,
      });
      const rec = record(sub, SUB_EVENTS);
      const view = new Map();
      sub.on('update', (u) => {
        if (u.removed) view.delete(u.key);
        else view.set(u.key, h.dec(u.data));
      });
      sub.subscribe();
      await waitFor(() => rec.count('subscribed') >= 1, `subscribed to ${channel}`, WAIT_MS, rec);
      return { sub, rec, view, signatures };
    },
  };
  t.after(async () => {
    for (const c of clients) {
      try { c.disconnect(); } catch { /* ignore */ }
    }
    for (const s of servers) {
      try { await s.stop(); } catch { s.kill(); }
    }
    for (const b of backends) b.stop();
  });
  return h;
}

const updatesOf = (rec, key) => rec.events.update.filter((u) => u.key === key);

for (const format of ['json', 'protobuf']) {
  describe(`centrifuge-js ${format}: shared-poll subscriptions`, { concurrency: 1 }, () => {
    test('track, updates of changed values only, untrack', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const { backend, server } = await h.setup();
      const channel = unique('poll:prices');
      await backend.set(channel, 'a', { v: 1 });
      await backend.set(channel, 'b', { v: 2 });
      const c = await h.connected(server, 'alice');
      const { sub, rec, view } = await h.polled(c, channel, 'alice');
      assert.equal(typeof rec.events.subscribed[0], 'object');
      sub.track(['a', 'b']);
      await waitFor(() => view.get('a')?.v === 1 && view.get('b')?.v === 2, 'a and b', WAIT_MS, rec);
      // Unchanged values are not sent again, poll after poll.
      await sleep(700);
      assert.equal(updatesOf(rec, 'a').length, 1, inspect(rec.events.update));
      await backend.set(channel, 'a', { v: 3 });
      await waitFor(() => view.get('a')?.v === 3, 'a changed', WAIT_MS, rec);
      const [first, second] = updatesOf(rec, 'a');
      assert.ok(second.version > first.version, 'versions grow');
      sub.untrack(['a']);
      await sleep(200);
      await backend.set(channel, 'a', { v: 4 });
      await backend.set(channel, 'b', { v: 5 });
      await waitFor(() => view.get('b')?.v === 5, 'b changed', WAIT_MS, rec);
      await sleep(700);
      assert.equal(updatesOf(rec, 'a').length, 2, 'nothing of an untracked key');
      assert.equal(rec.count('error'), 0, inspect(rec.events.error));
    });

    test('many clients tracking the same keys cost the backend one poll per key', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const { backend, server } = await h.setup();
      const channel = unique('poll:fleet');
      const keys = Array.from({ length: 10 }, (_, i) => `k${i}`);
      for (const k of keys) await backend.set(channel, k, { k });
      const subs = [];
      for (let i = 0; i < 5; i++) {
        const user = `u${i}`;
        const c = await h.connected(server, user);
        const s = await h.polled(c, channel, user);
        s.sub.track(keys);
        subs.push(s);
      }
      for (const s of subs) {
        await waitFor(() => s.view.size === keys.length, 'every key at every client', WAIT_MS, s.rec);
      }
      const before = (await backend.calls()).filter((call) => call.channel === channel);
      await sleep(1500);
      const calls = (await backend.calls()).filter((call) => call.channel === channel).slice(before.length);
      // About five intervals of 300 ms: each asks every key once, whatever the clients.
      assert.ok(calls.length >= 3 && calls.length <= 8, `${calls.length} calls in 1.5 s`);
      for (const call of calls) {
        assert.deepEqual([...call.keys].sort(), [...keys].sort(), 'each key once per call');
      }
    });

    test('a key the backend revokes is removed at every tracker', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const { backend, server } = await h.setup();
      const channel = unique('poll:docs');
      await backend.set(channel, 'doc', { title: 'draft' });
      const c = await h.connected(server, 'alice');
      const { sub, rec, view } = await h.polled(c, channel, 'alice');
      sub.track(['doc']);
      await waitFor(() => view.has('doc'), 'doc', WAIT_MS, rec);
      await backend.remove(channel, 'doc');
      await waitFor(() => updatesOf(rec, 'doc').some((u) => u.removed), 'the removal', WAIT_MS, rec);
      assert.equal(view.has('doc'), false);
    });

    test('a forged signature is refused with 103 and harms no one else', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const { backend, server } = await h.setup();
      const channel = unique('poll:vault');
      await backend.set(channel, 'gold', { oz: 1 });
      const mallory = await h.connected(server, 'mallory');
      const forged = await h.polled(mallory, channel, 'mallory');
      // Signed for alice, replayed by mallory; and made with another key.
      forged.sub.track([{ key: 'gold', version: 0 }], trackSignature(channel, 'alice', ['gold']));
      await waitFor(() => forged.rec.count('error') >= 1, 'a track error', WAIT_MS, forged.rec);
      assert.equal(forged.rec.events.error[0].type, 'track');
      assert.equal(forged.rec.events.error[0].error.code, 103);
      const alice = await h.connected(server, 'alice');
      const good = await h.polled(alice, channel, 'alice');
      good.sub.track(['gold']);
      await waitFor(() => good.view.get('gold')?.oz === 1, 'alice gets gold', WAIT_MS, good.rec);
      await backend.set(channel, 'gold', { oz: 2 });
      await waitFor(() => good.view.get('gold')?.oz === 2, 'alice gets the change', WAIT_MS, good.rec);
      await sleep(300);
      // The SDK drops the refused key itself (a synthetic removal); no value reaches mallory.
      assert.deepEqual(forged.rec.events.update.filter((u) => !u.removed), [], 'mallory got nothing');
      assert.equal(mallory.state, 'connected', 'a forged track is an error, not a disconnect');
    });

    test('signatures are refreshed before they expire; unrefreshed keys are dropped', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const { backend, server } = await h.setup();
      const channel = unique('poll:ttl');
      await backend.set(channel, 'a', { v: 1 });
      const c = await h.connected(server, 'alice');
      // Signatures valid for 2 s: the SDK asks for new ones before they run out.
      const fresh = await h.polled(c, channel, 'alice', { ttl: 2 });
      fresh.sub.track(['a']);
      await waitFor(() => fresh.view.get('a')?.v === 1, 'a', WAIT_MS, fresh.rec);
      await waitFor(() => fresh.signatures.length >= 2, 'a signature refresh', WAIT_MS, fresh.rec);
      await sleep(2500);
      await backend.set(channel, 'a', { v: 2 });
      await waitFor(() => fresh.view.get('a')?.v === 2, 'a still tracked past the first expiry', WAIT_MS, fresh.rec);

      // A client whose backend stops signing: its keys go 1 s after expiry (+5 s grace is only
      // for tracks), silently, while the others keep theirs.
      const bob = await h.connected(server, 'bob');
      let signing = true;
      const stale = await h.polled(bob, channel, 'bob', {
        ttl: 1,
        sub: {
          getSignature: async ({ keys }) => {
            if (!signing) throw new Error('backend unavailable');
            return { keys, signature: trackSignature(channel, 'bob', keys, 1) };
          },
        },
      });
      stale.sub.track(['a']);
      await waitFor(() => stale.view.get('a')?.v === 2, 'bob gets a', WAIT_MS, stale.rec);
      signing = false;
      await sleep(3000);
      await backend.set(channel, 'a', { v: 3 });
      await waitFor(() => fresh.view.get('a')?.v === 3, 'alice gets v3', WAIT_MS, fresh.rec);
      await sleep(700);
      assert.equal(stale.view.get('a')?.v, 2, 'bob no longer tracks a');
    });

    test('after a reconnect the SDK replays its tracks and nothing is delivered twice', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const { backend, server } = await h.setup();
      const channel = unique('poll:replay');
      await backend.set(channel, 'a', { v: 1 });
      const g = gate();
      const c = await h.connected(server, 'alice', g.WebSocket);
      const { sub, rec, view } = await h.polled(c, channel, 'alice');
      sub.track(['a']);
      await waitFor(() => view.get('a')?.v === 1, 'a', WAIT_MS, rec);
      // The connection drops (no close frame) and comes back at once: the SDK subscribes and
      // replays its track with the version it holds; the core still holds the key's value
      // (channel_shutdown_delay), so the version is the same and nothing is sent again.
      g.cut();
      await waitFor(() => c.state === 'connecting', 'the client to notice the cut', WAIT_MS, rec);
      g.open = true;
      await waitFor(() => rec.count('subscribed') >= 2, 'resubscribed', WAIT_MS, rec);
      await sleep(700);
      assert.equal(updatesOf(rec, 'a').length, 1, `held version not sent again: ${inspect(rec.events.update)}`);
      await backend.set(channel, 'a', { v: 2 });
      await waitFor(() => view.get('a')?.v === 2, 'a after the reconnect', WAIT_MS, rec);
    });

    test('versioned channels: backend versions, shared_poll_publish, a new epoch', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const { backend, server } = await h.setup();
      const channel = unique('vpoll:orders');
      await backend.epoch(channel, 'e1');
      await backend.set(channel, 'o1', { state: 'new' }, { version: 1 });
      const c = await h.connected(server, 'alice');
      const { sub, rec, view } = await h.polled(c, channel, 'alice');
      sub.track(['o1']);
      await waitFor(() => view.get('o1')?.state === 'new', 'o1', WAIT_MS, rec);
      assert.equal(updatesOf(rec, 'o1')[0].version, 1);
      // The application pushes a newer version right away; an older one is ignored.
      await server.apiOk('shared_poll_publish', { channel, key: 'o1', data: { state: 'paid' }, version: 5, epoch: 'e1' });
      await waitFor(() => view.get('o1')?.state === 'paid', 'the publish', WAIT_MS, rec);
      assert.equal(updatesOf(rec, 'o1').at(-1).version, 5);
      await server.apiOk('shared_poll_publish', { channel, key: 'o1', data: { state: 'stale' }, version: 4, epoch: 'e1' });
      await sleep(700);
      assert.equal(view.get('o1').state, 'paid');
      // shared_poll_publish needs publish_enabled (108) and a shared_poll namespace (107).
      const refused = await server.api('shared_poll_publish', { channel: unique('poll:x'), key: 'k', data: {}, version: 1 });
      assert.equal(refused.error?.code, 108, inspect(refused));
      const wrong = await server.api('shared_poll_publish', { channel: unique('chat:x'), key: 'k', data: {}, version: 1 });
      assert.equal(wrong.error?.code, 107, inspect(wrong));
      // A new backend epoch: the subscription starts over (2500) and tracks again.
      await backend.epoch(channel, 'e2');
      await backend.set(channel, 'o1', { state: 'rebuilt' }, { version: 1 });
      await waitFor(() => view.get('o1')?.state === 'rebuilt', 'o1 under the new epoch', WAIT_MS, rec);
      assert.ok(rec.count('subscribed') >= 2, 'resubscribed after the epoch change');
    });

    test('fossil deltas per key', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const { backend, server } = await h.setup();
      const channel = unique('poll:big');
      const body = 'x'.repeat(2000);
      await backend.set(channel, 'a', { body, n: 1 });
      const c = await h.connected(server, 'alice');
      const { sub, rec, view } = await h.polled(c, channel, 'alice', { sub: { delta: 'fossil' } });
      assert.equal(rec.events.subscribed[0].delta ?? true, true);
      sub.track(['a']);
      await waitFor(() => view.get('a')?.n === 1, 'a', WAIT_MS, rec);
      for (let n = 2; n <= 4; n++) {
        await backend.set(channel, 'a', { body, n });
        await waitFor(() => view.get('a')?.n === n, `a = ${n}`, WAIT_MS, rec);
      }
      assert.equal(view.get('a').body, body);
      assert.equal(rec.count('error'), 0, inspect(rec.events.error));
    });
  });
}
