// centrifuge-js against a real spindle binary: the token refresh cycle driven by the SDK's
// `getToken` callbacks, for the connection (`refresh`) and for a subscription (`sub_refresh`),
// across several expiries — in JSON and in Protobuf.
//
// Tokens live ~2 s and the server's grace periods after an expiry (client.expired_close_delay /
// expired_sub_close_delay, 25 s by default) are cut to 3 s, so a refresh the server accepted but
// did not act on (an expiry deadline left where it was) would end the connection with 3005, or
// the subscription with 2501, inside the observation window.
//
//   cd tests/sdk/js && node --test --test-concurrency=1 test/token_refresh.test.mjs   (or ../run.sh)

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';

import { Centrifuge as CentrifugeJson } from 'centrifuge';
import { Centrifuge as CentrifugeProtobuf } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';

import { expiredToken, sign, startServer, token, unique } from '../lib/spindle.mjs';
import { record, waitFor } from '../lib/wait.mjs';

const TEST_TIMEOUT_MS = 20000;
const WAIT_MS = 5000;
// Every token handed out lives this long; the server's ttl (and the SDK's refresh timer) is 1-2 s.
const TOKEN_LIFE_S = 2;
// How long a client is watched after connecting / subscribing: past the first expiry plus the
// cut grace period (at most 2 + 3 s), so a refresh without effect shows up as a 3005 or a 2501.
const WATCH_MS = 6500;
const PATCH = { client: { expired_close_delay: '3s', expired_sub_close_delay: '3s' } };

const nowS = () => Math.floor(Date.now() / 1000);
const shortToken = (user) => sign({ sub: user, iat: nowS(), exp: nowS() + TOKEN_LIFE_S });
const shortSubToken = (user, channel) =>
  sign({ sub: user, channel, iat: nowS(), exp: nowS() + TOKEN_LIFE_S });

const CLIENT_EVENTS = ['connecting', 'connected', 'disconnected', 'error'];
const SUB_EVENTS = ['subscribing', 'subscribed', 'unsubscribed', 'publication', 'error'];

function harness(t, format) {
  const clients = [];
  let server = null;
  const h = {
    dec: (v) => {
      if (format !== 'protobuf') return v;
      assert.ok(v instanceof Uint8Array, `protobuf payloads are bytes, got ${inspect(v)}`);
      return JSON.parse(new TextDecoder().decode(v));
    },
    async server() {
      server = await startServer({ patch: PATCH });
      return server;
    },
    client(options) {
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
    async connect(c, rec, who) {
      c.connect();
      await waitFor(() => rec.count('connected') >= 1 || rec.count('disconnected') >= 1, `${who} to connect`, WAIT_MS, rec);
      assert.equal(rec.count('connected'), 1, `${who} connected: ${inspect(rec.events, { depth: 4 })}`);
      return rec.events.connected[0].client;
    },
  };
  t.after(async () => {
    for (const c of clients) {
      try { c.disconnect(); } catch { /* ignore */ }
    }
    if (server) {
      try { await server.stop(); } catch { server.kill(); }
    }
  });
  return h;
}

for (const format of ['json', 'protobuf']) {
  describe(`centrifuge-js ${format}: token refresh`, { concurrency: 1 }, () => {
    test('connection: getToken refreshes a short-lived token across expiries, no reconnect', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const user = 'refresher';
      const channel = unique('chat:refresh');
      let calls = 0;
      const { c, rec } = h.client({
        token: shortToken(user),
        getToken: async () => {
          calls += 1;
          return shortToken(user);
        },
      });
      const clientId = await h.connect(c, rec, user);
      const started = Date.now();
      const sub = c.newSubscription(channel);
      const srec = record(sub, SUB_EVENTS);
      sub.subscribe();
      await waitFor(() => srec.count('subscribed') >= 1, `subscribed to ${channel}`, WAIT_MS, srec);

      // The SDK refreshes when the server's ttl runs out: 1-2 s per token.
      await waitFor(() => calls >= 2, 'two getToken calls', WATCH_MS, rec);
      const data = { after: 'second refresh' };
      await server.apiOk('publish', { channel, data });
      await waitFor(() => srec.count('publication') >= 1, 'the publication after two refreshes', WAIT_MS, srec);
      assert.deepEqual(h.dec(srec.events.publication[0].data), data);

      await sleep(Math.max(0, WATCH_MS - (Date.now() - started)));
      assert.ok(calls >= 2, `getToken calls: ${calls}`);
      assert.equal(c.state, 'connected');
      assert.equal(rec.count('disconnected'), 0, inspect(rec.events.disconnected));
      assert.equal(rec.count('connecting'), 1, `only the initial connecting: ${inspect(rec.events.connecting)}`);
      assert.equal(rec.count('connected'), 1, 'never reconnected');
      assert.equal(rec.events.connected[0].client, clientId);
      assert.equal(rec.count('error'), 0, inspect(rec.events.error, { depth: 4 }));
      assert.equal(srec.count('subscribed'), 1, 'never resubscribed');
    });

    test('subscription: getToken refreshes a short-lived subscription token, stays subscribed', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.server();
      const user = 'subrefresher';
      // `secret` has no allow_subscribe_for_client: only a subscription token lets a client in
      // (103 without one, see sdk.test.mjs "permission denied").
      const channel = unique('secret:refresh');
      const { c, rec } = h.client({ token: token(user) });
      const clientId = await h.connect(c, rec, user);
      let calls = 0;
      // The first token is given up front, so every getToken call is a sub_refresh.
      const sub = c.newSubscription(channel, {
        token: shortSubToken(user, channel),
        getToken: async (ctx) => {
          assert.equal(ctx.channel, channel);
          calls += 1;
          return shortSubToken(user, channel);
        },
      });
      const srec = record(sub, SUB_EVENTS);
      sub.subscribe();
      await waitFor(() => srec.count('subscribed') >= 1 || srec.count('unsubscribed') >= 1, `subscribed to ${channel}`, WAIT_MS, srec);
      assert.equal(sub.state, 'subscribed', inspect(srec.events, { depth: 4 }));
      const started = Date.now();
      assert.equal(calls, 0, 'no getToken call for the subscribe itself');

      await server.apiOk('publish', { channel, data: { n: 1 } });
      await waitFor(() => srec.count('publication') >= 1, 'the publication before any refresh', WAIT_MS, srec);
      await waitFor(() => calls >= 2, 'two subscription getToken calls', WATCH_MS, srec);
      await server.apiOk('publish', { channel, data: { n: 2 } });
      await waitFor(() => srec.count('publication') >= 2, 'the publication after two refreshes', WAIT_MS, srec);

      await sleep(Math.max(0, WATCH_MS - (Date.now() - started)));
      await server.apiOk('publish', { channel, data: { n: 3 } });
      await waitFor(() => srec.count('publication') >= 3, 'the publication at the end of the watch', WAIT_MS, srec);
      assert.deepEqual(srec.events.publication.map((p) => h.dec(p.data)), [{ n: 1 }, { n: 2 }, { n: 3 }]);
      assert.ok(calls >= 2, `getToken calls: ${calls}`);
      assert.equal(sub.state, 'subscribed');
      assert.equal(srec.count('subscribed'), 1, 'never resubscribed');
      assert.equal(srec.count('subscribing'), 1, `only the initial subscribing: ${inspect(srec.events.subscribing)}`);
      assert.equal(srec.count('unsubscribed'), 0, inspect(srec.events.unsubscribed));
      assert.equal(srec.count('error'), 0, inspect(srec.events.error, { depth: 4 }));
      assert.equal(rec.count('connected'), 1, 'never reconnected');
      assert.equal(rec.events.connected[0].client, clientId);
      assert.equal(rec.count('disconnected'), 0);
    });

    // Spindle answers a connection `refresh` whose new token is already expired by closing the
    // connection with 3005 "connection expired" (hub/src/jwt/mod.rs, the table; docs/protocol.md §5.4)
    // — no error reply. 3005 is below 3500, so the SDK reconnects; it does so with the token it
    // last got, which its refresh stored before sending it: the expired one. The connect is
    // answered with error 109, which makes the SDK call getToken again; with a good token this
    // time it connects — a new connection, with a new client id, and without a 'disconnected'.
    test('connection: getToken returns an expired token → 3005, reconnect, 109, getToken, connected', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      await h.server();
      const user = 'stale';
      let calls = 0;
      const { c, rec } = h.client({
        token: shortToken(user),
        getToken: async () => {
          calls += 1;
          return calls === 1 ? expiredToken(user) : token(user);
        },
      });
      const firstId = await h.connect(c, rec, user);

      await waitFor(() => rec.count('connected') >= 2 || rec.count('disconnected') >= 1, 'the reconnect after the expired refresh', WATCH_MS, rec);
      assert.equal(rec.count('disconnected'), 0, inspect(rec.events.disconnected));
      assert.equal(rec.count('connected'), 2, inspect(rec.events, { depth: 4 }));
      assert.equal(calls, 2, 'getToken: the refresh, then after the 109');
      assert.deepEqual(rec.events.connecting.map((e) => e.code), [0, 3005], inspect(rec.events.connecting));
      assert.equal(rec.events.connecting[1].reason, 'connection expired');
      const errors = rec.events.error.map((e) => [e.type, e.error && e.error.code]);
      assert.deepEqual(errors, [['connect', 109]], inspect(rec.events.error, { depth: 4 }));
      assert.notEqual(rec.events.connected[1].client, firstId, 'a new connection');
      assert.equal(c.state, 'connected');
    });
  });
}
