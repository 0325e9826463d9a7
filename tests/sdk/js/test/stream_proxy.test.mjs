// centrifuge-js on subscription streams (subscribe_stream_proxy) against a real spindle binary,
// JSON and Protobuf, with a tonic backend serving Centrifugo's SubscribeUnidirectional /
// SubscribeBidirectional (the `spindle-grpc-test-backend` binary of the tests crate, built next
// to spindle): the subscribe reply's data comes from the stream's first message, publications
// reach only their own subscriber, a stream the backend ends unsubscribes the client (2000), a
// bidirectional stream echoes what the client publishes, a unidirectional one refuses it (108).
//
//   cd tests/sdk/js && node --test --test-concurrency=1 test/stream_proxy.test.mjs   (or ../run.sh)

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { describe, test } from 'node:test';
import { inspect } from 'node:util';

import { Centrifuge as CentrifugeJson } from 'centrifuge';
import { Centrifuge as CentrifugeProtobuf } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';

import { binaryPath, startServer, token, unique } from '../lib/spindle.mjs';
import { record, waitFor } from '../lib/wait.mjs';

const TEST_TIMEOUT_MS = 60000;
const WAIT_MS = 8000;
const SUB_EVENTS = ['subscribing', 'subscribed', 'unsubscribed', 'publication', 'error'];

// The tonic backend: `spindle-grpc-test-backend` next to the spindle binary (cargo builds both
// into the same target directory), or $SPINDLE_GRPC_BACKEND_BIN.
async function startBackend() {
  const bin = process.env.SPINDLE_GRPC_BACKEND_BIN
    ?? path.join(path.dirname(binaryPath()), 'spindle-grpc-test-backend');
  assert.ok(fs.existsSync(bin), `no ${bin}: build it with \`cargo build -p spindle-tests --bin spindle-grpc-test-backend\` (tests/sdk/run.sh does)`);
  const child = spawn(bin, [], { stdio: ['ignore', 'pipe', 'inherit'] });
  const endpoint = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the gRPC backend did not start')), 10000);
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^listening (\S+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`the gRPC backend exited (${code})`)));
  });
  return { endpoint, stop: () => child.kill() };
}

function harness(t, format) {
  const clients = [];
  const servers = [];
  const backends = [];
  const h = {
    dec: (v) => (format === 'protobuf' ? JSON.parse(new TextDecoder().decode(v)) : v),
    enc: (v) => (format === 'protobuf' ? new TextEncoder().encode(JSON.stringify(v)) : v),
    async setup() {
      const backend = await startBackend();
      backends.push(backend);
      const server = await startServer({
        patch: {
          channel: {
            proxy: { subscribe_stream: { endpoint: backend.endpoint } },
            namespaces: [
              { name: 'st', subscribe_stream_proxy_enabled: true },
              { name: 'bst', subscribe_stream_proxy_enabled: true, subscribe_stream_proxy_bidirectional: true },
            ],
          },
        },
      });
      servers.push(server);
      return server;
    },
    async connected(server, user) {
      const Impl = format === 'protobuf' ? CentrifugeProtobuf : CentrifugeJson;
      const c = new Impl(server.url, { websocket: WebSocket, token: token(user) });
      clients.push(c);
      const rec = record(c, ['connected']);
      c.connect();
      await waitFor(() => rec.count('connected') >= 1, `${user} to connect`, WAIT_MS, rec);
      return c;
    },
    async subscribed(c, channel) {
      const sub = c.newSubscription(channel);
      const rec = record(sub, SUB_EVENTS);
      sub.subscribe();
      const settled = () => rec.count('subscribed') + rec.count('error') + rec.count('unsubscribed') > 0;
      await waitFor(settled, `subscribed to ${channel}`, WAIT_MS, rec);
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
    for (const b of backends) b.stop();
  });
  return h;
}

for (const format of ['json', 'protobuf']) {
  describe(`centrifuge-js ${format}: subscription streams`, { concurrency: 1 }, () => {
    test('each subscriber gets its own stream, in order, after the subscribe', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.setup();
      const channel = unique('st:endless');
      const alice = await h.subscribed(await h.connected(server, 'alice'), channel);
      const bob = await h.subscribed(await h.connected(server, 'bob'), channel);
      assert.deepEqual(h.dec(alice.rec.events.subscribed[0].data), { stream: 'uni', user: 'alice' });
      assert.deepEqual(h.dec(bob.rec.events.subscribed[0].data), { stream: 'uni', user: 'bob' });
      for (const s of [alice, bob]) {
        await waitFor(() => s.rec.count('publication') >= 3, 'three publications', WAIT_MS, s.rec);
        const ns = s.rec.events.publication.map((p) => h.dec(p.data).n);
        assert.deepEqual(ns.slice(0, 3), [1, 2, 3], `its own stream only: ${inspect(ns)}`);
      }
    });

    test('a stream the backend ends unsubscribes the client', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.setup();
      const channel = unique('st:short');
      const s = await h.subscribed(await h.connected(server, 'alice'), channel);
      await waitFor(() => s.rec.count('unsubscribed') >= 1, 'the unsubscribe', WAIT_MS, s.rec);
      assert.equal(s.rec.count('publication'), 3, 'every publication before the end');
      assert.equal(s.rec.events.unsubscribed[0].code, 2000, inspect(s.rec.events.unsubscribed));
    });

    test('a refusing first message refuses the subscribe', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.setup();
      const s = await h.subscribed(await h.connected(server, 'alice'), unique('st:denied'));
      await waitFor(() => s.rec.count('unsubscribed') >= 1, 'the refusal', WAIT_MS, s.rec);
      assert.equal(s.rec.events.unsubscribed[0].code, 103, inspect(s.rec.events));
    });

    test('publications go up a bidirectional stream, not a unidirectional one', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const h = harness(t, format);
      const server = await h.setup();
      const c = await h.connected(server, 'alice');
      const chat = unique('bst:chat');
      const s = await h.subscribed(c, chat);
      for (let i = 0; i < 3; i++) await s.sub.publish(h.enc({ hi: i }));
      await waitFor(() => s.rec.count('publication') >= 3, 'three echoes', WAIT_MS, s.rec);
      assert.deepEqual(s.rec.events.publication.map((p) => h.dec(p.data)), [0, 1, 2].map((i) => ({ echo: { hi: i } })));
      const uni = await h.subscribed(c, unique('st:endless'));
      await assert.rejects(uni.sub.publish(h.enc({ x: 1 })), (e) => e.code === 108);
    });
  });
}
