// centrifuge-js against the split shape (issue 14): `spindle core` + two `spindle edge`s joined
// by QUIC, clients on different edges, the backend publishing on the core. JSON and Protobuf.
//
//   cd tests/sdk/js && node --test --test-concurrency=1 test/split.test.mjs

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';

import { Centrifuge as CentrifugeJson } from 'centrifuge';
import { Centrifuge as CentrifugeProtobuf } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';

import { startSplit, token, unique } from '../lib/spindle.mjs';
import { gate } from '../lib/gate.mjs';
import { record, waitFor } from '../lib/wait.mjs';

const TEST_TIMEOUT_MS = 60000;
const WAIT_MS = 5000;
const SUB_EVENTS = ['subscribing', 'subscribed', 'unsubscribed', 'publication', 'error', 'join', 'leave'];

for (const format of ['json', 'protobuf']) {
  describe(`centrifuge-js ${format} on the split`, { concurrency: 1 }, () => {
    const enc = (v) => (format === 'protobuf' ? new TextEncoder().encode(JSON.stringify(v)) : v);
    const dec = (v) => (format === 'protobuf' ? JSON.parse(new TextDecoder().decode(v)) : v);
    const Impl = format === 'protobuf' ? CentrifugeProtobuf : CentrifugeJson;

    async function setup(t) {
      const split = await startSplit({ edges: 2 });
      const clients = [];
      t.after(async () => {
        for (const c of clients) c.disconnect();
        await split.stop();
      });
      const connect = async (edge, user, websocket = WebSocket) => {
        const c = new Impl(edge.url, { websocket, token: token(user), minReconnectDelay: 100, maxReconnectDelay: 500 });
        clients.push(c);
        const connected = new Promise((resolve) => c.once('connected', resolve));
        c.connect();
        await connected;
        return c;
      };
      const subscribe = async (c, channel, options = {}) => {
        const sub = c.newSubscription(channel, options);
        const rec = record(sub, SUB_EVENTS);
        sub.subscribe();
        await waitFor(() => rec.count('subscribed') >= 1, `subscribed to ${channel}`, WAIT_MS, rec);
        return { sub, rec };
      };
      return { split, connect, subscribe };
    }

    test('clients on two edges: API publications from the core, and each other', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { split, connect, subscribe } = await setup(t);
      const channel = unique('chat:split');
      const alice = await connect(split.edges[0], 'alice');
      const bob = await connect(split.edges[1], 'bob');
      const a = await subscribe(alice, channel);
      const b = await subscribe(bob, channel);
      await split.core.apiOk('publish', { channel, data: { n: 1 } });
      for (const [name, r] of [['alice', a.rec], ['bob', b.rec]]) {
        await waitFor(() => r.count('publication') >= 1, `${name}: the publication`, WAIT_MS, r);
        assert.deepEqual(dec(r.events.publication[0].data), { n: 1 });
      }
      await a.sub.publish(enc({ from: 'alice' }));
      await waitFor(() => b.rec.count('publication') >= 2, 'bob: alice\'s publication', WAIT_MS, b.rec);
      assert.deepEqual(dec(b.rec.events.publication[1].data), { from: 'alice' });
      assert.equal(b.rec.events.publication[1].info.user, 'alice');
      await sleep(300);
      assert.equal(a.rec.count('publication'), 2, 'alice got each once');
      assert.equal(b.rec.count('publication'), 2, 'bob got each once');
    });

    test('recovery through an edge after a lost connection', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { split, connect, subscribe } = await setup(t);
      const channel = unique('rec:split');
      const g = gate();
      const carol = await connect(split.edges[1], 'carol', g.WebSocket);
      const { rec } = await subscribe(carol, channel);
      await split.core.apiOk('publish', { channel, data: { n: 1 } });
      await waitFor(() => rec.count('publication') >= 1, 'the first publication', WAIT_MS, rec);
      // Cut the connection under the SDK; publish while it is away; it reconnects and recovers.
      g.cut();
      await waitFor(() => carol.state === 'connecting', 'the connection lost', WAIT_MS);
      await split.core.apiOk('publish', { channel, data: { n: 2 } });
      await split.core.apiOk('publish', { channel, data: { n: 3 } });
      g.open = true;
      await waitFor(() => rec.count('subscribed') >= 2, 'resubscribed', 10000, rec);
      const again = rec.events.subscribed[1];
      assert.equal(again.wasRecovering, true, inspect(again));
      assert.equal(again.recovered, true, inspect(again));
      await waitFor(() => rec.count('publication') >= 3, 'the missed publications', WAIT_MS, rec);
      assert.deepEqual(rec.events.publication.map((p) => dec(p.data).n), [1, 2, 3]);
    });

    // Issue 15: two cores on one Redis, both edges linked to core1, the backend publishing
    // through core2; core1 is killed (SIGKILL) mid-stream. The SDKs must see nothing: no
    // disconnect, no resubscribe, every publication once and in order.
    test('a killed core is invisible to clients on two edges', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const prefix = unique('spindle-js-failover');
      const split = await startSplit({
        cores: 2,
        edges: 2,
        patch: { engine: { type: 'redis', redis: { address: 'redis://127.0.0.1:6379', prefix } } },
      });
      const clients = [];
      t.after(async () => {
        for (const c of clients) c.disconnect();
        await split.stop();
      });
      const channel = unique('rec:failover');
      const watched = [];
      for (const [i, edge] of split.edges.entries()) {
        const c = new Impl(edge.url, { websocket: WebSocket, token: token(`reader${i}`) });
        clients.push(c);
        const conn = record(c, ['connecting', 'connected', 'disconnected', 'error']);
        const connected = new Promise((resolve) => c.once('connected', resolve));
        c.connect();
        await connected;
        const sub = c.newSubscription(channel);
        const rec = record(sub, SUB_EVENTS);
        sub.subscribe();
        await waitFor(() => rec.count('subscribed') >= 1, `subscribed to ${channel}`, WAIT_MS, rec);
        watched.push({ conn, rec });
      }
      const total = 90;
      for (let n = 1; n <= total; n++) {
        if (n === 30) split.cores[0].kill();
        await split.cores[1].apiOk('publish', { channel, data: { n } });
        await sleep(25);
      }
      for (const [i, { conn, rec }] of watched.entries()) {
        await waitFor(() => rec.count('publication') >= total, `reader${i}: every publication`, 10000, rec);
        assert.deepEqual(rec.events.publication.map((p) => dec(p.data).n), Array.from({ length: total }, (_, k) => k + 1));
        assert.deepEqual(rec.events.publication.map((p) => p.offset), Array.from({ length: total }, (_, k) => k + 1));
        assert.equal(conn.count('disconnected'), 0, `reader${i} was disconnected: ${inspect(conn.events)}`);
        assert.equal(conn.count('connecting'), 1, `reader${i} reconnected: ${inspect(conn.events)}`);
        assert.equal(rec.count('unsubscribed'), 0, inspect(rec.events.unsubscribed));
        assert.equal(rec.count('subscribed'), 1, 'never resubscribed');
      }
      await sleep(300);
      for (const { rec } of watched) assert.equal(rec.count('publication'), total, 'each once');
    });
  });
}
