// centrifuge-js (npm `centrifuge`) against a real spindle binary, in JSON and in Protobuf.
// Every test starts its own server (tests/fixtures/spindle.json) on a free port.
//
//   cd tests/sdk/js && node --test --test-concurrency=1 test/sdk.test.mjs   (or npm test, or ../run.sh)

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';

import { Centrifuge as CentrifugeJson } from 'centrifuge';
import { Centrifuge as CentrifugeProtobuf } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';

import {
  badlySignedToken, expiredToken, freePort, startServer, token, unique,
} from '../lib/spindle.mjs';
import { record, waitFor } from '../lib/wait.mjs';

const TEST_TIMEOUT_MS = 45000;
const WAIT_MS = 5000;
const QUIET_MS = 300;

const CLIENT_EVENTS = ['connecting', 'connected', 'disconnected', 'error', 'subscribed', 'subscribing',
  'unsubscribed', 'publication'];
const SUB_EVENTS = ['subscribing', 'subscribed', 'unsubscribed', 'publication', 'error'];

// One test's world: its server(s), clients and payload codec for `format`.
function harness(t, format) {
  const clients = [];
  const servers = [];
  const h = {
    format,
    // JSON codec: payloads are JSON values; protobuf: bytes holding the JSON text.
    enc: (v) => (format === 'protobuf' ? new TextEncoder().encode(JSON.stringify(v)) : v),
    dec: (v) => {
      if (format !== 'protobuf') return v;
      assert.ok(v instanceof Uint8Array, `protobuf payloads are bytes, got ${inspect(v)}`);
      return JSON.parse(new TextDecoder().decode(v));
    },
    async server(opts) {
      const s = await startServer(opts);
      servers.push(s);
      return s;
    },
    client(server, options) {
      const Impl = format === 'protobuf' ? CentrifugeProtobuf : CentrifugeJson;
      const c = new Impl(server.url, {
        websocket: WebSocket,
        minReconnectDelay: 100,
        maxReconnectDelay: 500,
        ...options,
      });
      const rec = record(c, CLIENT_EVENTS);
      clients.push(c);
      return { c, rec };
    },
    // A connected client of `user`; resolves once the 'connected' event is seen.
    async connected(server, user, options = {}) {
      const { c, rec } = h.client(server, { token: token(user), ...options });
      c.connect();
      await waitFor(() => rec.count('connected') >= 1 || rec.count('disconnected') >= 1, `${user} to connect`, WAIT_MS, rec);
      assert.equal(rec.count('connected'), 1, `${user} connected: ${inspect(rec.events, { depth: 4 })}`);
      return { c, rec, clientId: rec.events.connected[0].client };
    },
    // A subscribed subscription to `channel`.
    async subscribed(c, channel, options = {}) {
      const sub = c.newSubscription(channel, options);
      const rec = record(sub, SUB_EVENTS);
      sub.subscribe();
      await waitFor(() => rec.count('subscribed') >= 1 || rec.count('unsubscribed') >= 1, `subscribed to ${channel}`, WAIT_MS, rec);
      assert.equal(sub.state, 'subscribed', `${channel}: ${inspect(rec.events, { depth: 4 })}`);
      return { sub, rec };
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

for (const format of ['json', 'protobuf']) {
  describe(`centrifuge-js ${format}`, { concurrency: 1 }, () => {
    test('connects with a token', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const { c, rec, clientId } = await h.connected(server, 'alice');
      assert.equal(c.state, 'connected');
      assert.ok(clientId, 'client id in the connected event');
      assert.equal(rec.events.connected[0].transport, 'websocket');
      assert.equal(rec.count('error'), 0, inspect(rec.events.error));
    });

    test('receives a publication sent with POST /api/publish, once', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const { c } = await h.connected(server, 'alice');
      const channel = unique('chat:room');
      const { rec } = await h.subscribed(c, channel);
      const data = { text: 'hello', n: 1 };
      const reply = await server.api('publish', { channel, data });
      assert.ok(reply.result, `publish reply ${JSON.stringify(reply)}`);
      await waitFor(() => rec.count('publication') >= 1, 'the publication', WAIT_MS, rec);
      const pub = rec.events.publication[0];
      assert.equal(pub.channel, channel);
      assert.deepEqual(h.dec(pub.data), data);
      assert.ok(!pub.info, 'API publications carry no publisher info');
      await sleep(QUIET_MS);
      assert.equal(rec.count('publication'), 1, 'received exactly once');
    });

    test('client publish reaches another subscriber with publisher info', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('chat:room');
      const alice = await h.connected(server, 'alice');
      const bob = await h.connected(server, 'bob');
      const a = await h.subscribed(alice.c, channel);
      const b = await h.subscribed(bob.c, channel);
      const data = { from: 'bob' };
      await b.sub.publish(h.enc(data));
      for (const [name, r] of [['alice', a.rec], ['bob', b.rec]]) {
        await waitFor(() => r.count('publication') >= 1, `${name} to get the publication`, WAIT_MS, r);
        const pub = r.events.publication[0];
        assert.deepEqual(h.dec(pub.data), data, name);
        assert.ok(pub.info, `${name}: publication info`);
        assert.equal(pub.info.user, 'bob', name);
        assert.equal(pub.info.client, bob.clientId, name);
      }
      await sleep(QUIET_MS);
      assert.equal(a.rec.count('publication'), 1, 'alice got it once');
      assert.equal(b.rec.count('publication'), 1, 'bob got it once');
    });

    test('unsubscribe stops delivery', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const { c } = await h.connected(server, 'carol');
      const gone = await h.subscribed(c, unique('chat:gone'));
      const kept = await h.subscribed(c, unique('chat:kept'));
      gone.sub.unsubscribe();
      await waitFor(() => gone.rec.count('unsubscribed') >= 1, 'unsubscribed event', WAIT_MS, gone.rec);
      assert.equal(gone.sub.state, 'unsubscribed');
      assert.equal(gone.rec.events.unsubscribed[0].code, 0, 'code 0 = unsubscribe called');
      // The unsubscribe command is sent asynchronously: let it reach the server first.
      await sleep(200);
      await server.apiOk('publish', { channel: gone.sub.channel, data: { n: 1 } });
      await server.apiOk('publish', { channel: kept.sub.channel, data: { n: 2 } });
      await waitFor(() => kept.rec.count('publication') >= 1, 'publication on the kept channel', WAIT_MS, kept.rec);
      await sleep(QUIET_MS);
      assert.equal(gone.rec.count('publication'), 0, 'nothing after unsubscribe');
    });

    test("server-side subscription from the token's channels", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const channel = unique('chat:server-side');
      const { c, rec } = h.client(server, { token: token('dan', { channels: [channel] }) });
      c.connect();
      await waitFor(() => rec.count('subscribed') >= 1, 'server-side subscribed event', WAIT_MS, rec);
      assert.equal(rec.events.subscribed[0].channel, channel);
      const data = { server: 'side' };
      await server.apiOk('publish', { channel, data });
      await waitFor(() => rec.count('publication') >= 1, 'server-side publication', WAIT_MS, rec);
      assert.equal(rec.events.publication[0].channel, channel);
      assert.deepEqual(h.dec(rec.events.publication[0].data), data);
    });

    test('permission denied (103)', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const { c, rec: crec } = await h.connected(server, 'eve');
      const channel = unique('secret:vault');
      const sub = c.newSubscription(channel);
      const rec = record(sub, SUB_EVENTS);
      sub.subscribe();
      await waitFor(() => rec.count('unsubscribed') >= 1, 'unsubscribed after 103', WAIT_MS, rec);
      assert.equal(rec.events.unsubscribed[0].code, 103, inspect(rec.events.unsubscribed[0]));
      assert.equal(sub.state, 'unsubscribed');
      await assert.rejects(c.publish(channel, h.enc({ x: 1 })), (e) => e.code === 103);
      assert.equal(c.state, 'connected', `still connected: ${inspect(crec.events.disconnected)}`);
    });

    test('a user-limited channel is closed to users it does not list (103)', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      // Issue 13: with allow_user_limited_channels and allow_subscribe_for_client both on,
      // `#alice` is alice's alone — mallory gets 103 and none of its publications.
      const h = harness(t, format);
      const server = await h.server({
        patch: { channel: { without_namespace: { allow_user_limited_channels: true, allow_subscribe_for_client: true } } },
      });
      const channel = `#${unique('alice')}`;
      const owner = channel.slice(1);
      const alice = await h.connected(server, owner);
      const mine = await h.subscribed(alice.c, channel);
      const mallory = await h.connected(server, 'mallory');
      const sub = mallory.c.newSubscription(channel);
      const rec = record(sub, SUB_EVENTS);
      sub.subscribe();
      await waitFor(() => rec.count('unsubscribed') >= 1, 'unsubscribed after 103', WAIT_MS, rec);
      assert.equal(rec.events.unsubscribed[0].code, 103, inspect(rec.events, { depth: 4 }));
      assert.equal(rec.count('subscribed'), 0, 'mallory was never subscribed');
      await server.apiOk('publish', { channel, data: { secret: 1 } });
      await waitFor(() => mine.rec.count('publication') >= 1, 'alice gets her publication', WAIT_MS, mine.rec);
      await sleep(QUIET_MS);
      assert.equal(rec.count('publication'), 0, 'mallory got nothing');
      assert.equal(mallory.c.state, 'connected');
    });

    test('invalid token: close 3500, no reconnect', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const { c, rec } = h.client(server, { token: badlySignedToken('mallory') });
      c.connect();
      await waitFor(() => rec.count('disconnected') >= 1, 'disconnected event', WAIT_MS, rec);
      assert.equal(rec.events.disconnected[0].code, 3500, inspect(rec.events.disconnected[0]));
      assert.equal(c.state, 'disconnected');
      const connecting = rec.count('connecting');
      await sleep(800);
      assert.equal(c.state, 'disconnected', 'stays disconnected');
      assert.equal(rec.count('connecting'), connecting, 'no reconnect attempt');
      assert.equal(rec.count('connected'), 0);
    });

    test('expired token (109): getToken is called and the client reconnects', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      let calls = 0;
      const { c, rec } = h.client(server, {
        token: expiredToken('late'),
        getToken: async () => {
          calls += 1;
          return token('late');
        },
      });
      c.connect();
      await waitFor(() => rec.count('connected') >= 1, 'connected with the new token', WAIT_MS, rec);
      assert.equal(calls, 1, 'getToken calls');
      const codes = rec.events.error.map((e) => e.error && e.error.code);
      assert.ok(codes.includes(109), `an error event with code 109: ${inspect(rec.events.error, { depth: 4 })}`);
      assert.equal(c.state, 'connected');
    });

    test('API disconnect: code 3503', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const { c, rec } = await h.connected(server, 'dave');
      await server.apiOk('disconnect', { user: 'dave' });
      await waitFor(() => rec.count('disconnected') >= 1, 'disconnected event', WAIT_MS, rec);
      assert.equal(rec.events.disconnected[0].code, 3503, inspect(rec.events.disconnected[0]));
      assert.equal(c.state, 'disconnected');
    });

    test('API unsubscribe: code 2000', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const { c } = await h.connected(server, 'frank');
      const channel = unique('chat:kicked');
      const { sub, rec } = await h.subscribed(c, channel);
      await server.apiOk('unsubscribe', { channel, user: 'frank' });
      await waitFor(() => rec.count('unsubscribed') >= 1, 'unsubscribed event', WAIT_MS, rec);
      assert.equal(rec.events.unsubscribed[0].code, 2000, inspect(rec.events.unsubscribed[0]));
      assert.equal(sub.state, 'unsubscribed');
      assert.equal(c.state, 'connected');
    });

    test('reconnects after the server restarts on the same port', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const port = await freePort();
      const first = await h.server({ port });
      const { c, rec } = await h.connected(first, 'gina');
      const channel = unique('chat:restart');
      const s = await h.subscribed(c, channel);
      const status = await first.stop();
      assert.equal(status.code, 0, `exit after SIGTERM: ${inspect(status)}`);
      await waitFor(() => rec.events.connecting.some((e) => e.code === 3001), 'connecting event with code 3001', WAIT_MS, rec);
      const second = await h.server({ port });
      await waitFor(() => rec.count('connected') >= 2, 'reconnect', 10000, rec);
      await waitFor(() => s.rec.count('subscribed') >= 2, 'resubscribe', WAIT_MS, s.rec);
      const data = { after: 'restart' };
      await second.apiOk('publish', { channel, data });
      await waitFor(() => s.rec.count('publication') >= 1, 'publication after restart', WAIT_MS, s.rec);
      assert.deepEqual(h.dec(s.rec.events.publication[0].data), data);
      assert.equal(rec.count('disconnected'), 0, 'never disconnected for good');
    });
  });
}
