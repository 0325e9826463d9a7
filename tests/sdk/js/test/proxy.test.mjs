// centrifuge-js against spindle with every proxy pointed at a small application backend (a node
// HTTP server in this file answering Centrifugo's HTTP proxy protocol), in JSON and Protobuf:
// connect through the connect proxy without a token, subscribe allowed / denied by the subscribe
// proxy, a publication rewritten by the publish proxy, an RPC round trip, map writes decided by
// the map publish / remove proxies.
//
//   cd tests/sdk/js && node --test --test-concurrency=1 test/proxy.test.mjs   (or ../run.sh js)

import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, test } from 'node:test';
import { inspect } from 'node:util';

import { Centrifuge as CentrifugeJson } from 'centrifuge';
import { Centrifuge as CentrifugeProtobuf } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';

import { startServer, unique } from '../lib/spindle.mjs';
import { record, waitFor } from '../lib/wait.mjs';

const TEST_TIMEOUT_MS = 45000;
const WAIT_MS = 5000;

// The backend: answers by route and by what the request names; records every request body.
async function startBackend() {
  const received = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      const request = JSON.parse(body || '{}');
      const route = req.url.slice(1);
      received.push({ route, body: request });
      const reply = (value) => {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      switch (route) {
        case 'connect':
          // Connect data says who the user is (a real backend would read a session cookie).
          return reply({ result: { user: request.data.user, info: { name: request.data.user }, data: { welcome: true } } });
        case 'subscribe':
          if (request.channel.includes('denied')) return reply({ error: { code: 103, message: 'permission denied' } });
          return reply({ result: { data: { hello: request.user } } });
        case 'publish':
          return reply({ result: { data: { rewritten: true, by: request.user, original: request.data } } });
        case 'rpc':
          return reply({ result: { data: { method: request.method, echo: request.data, user: request.user } } });
        case 'map_publish':
          if (request.key === 'forbidden') return reply({ error: { code: 403, message: 'not yours' } });
          return reply({ result: { key: `${request.user}:${request.key}`, data: { by: request.user, original: request.data }, tags: { owner: request.user } } });
        case 'map_remove':
          if (request.key.startsWith('locked')) return reply({ error: { code: 403, message: 'locked' } });
          return reply({ result: {} });
        default:
          res.writeHead(404);
          return res.end();
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: (route) => `http://127.0.0.1:${port}/${route}`,
    received,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

function patchFor(backend) {
  return {
    client: { proxy: { connect: { enabled: true, endpoint: backend.url('connect') } } },
    channel: {
      proxy: {
        subscribe: { endpoint: backend.url('subscribe') },
        publish: { endpoint: backend.url('publish') },
        map_publish: { endpoint: backend.url('map_publish') },
        map_remove: { endpoint: backend.url('map_remove') },
      },
      namespaces: [
        { name: 'px', subscribe_proxy_enabled: true, publish_proxy_enabled: true },
        {
          name: 'pxmap', subscription_type: 'map', allow_subscribe_for_client: true,
          map: { mode: 'persistent', min_page_size: 1, publish_proxy_enabled: true, remove_proxy_enabled: true },
        },
      ],
    },
    rpc: { proxy: { endpoint: backend.url('rpc') }, without_namespace: { proxy_enabled: true } },
  };
}

for (const format of ['json', 'protobuf']) {
  describe(`centrifuge-js ${format} with proxies`, { concurrency: 1 }, () => {
    test('connect, subscribe, publish and rpc go through the backend', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const enc = (v) => (format === 'protobuf' ? new TextEncoder().encode(JSON.stringify(v)) : v);
      const dec = (v) => (format === 'protobuf' ? JSON.parse(new TextDecoder().decode(v)) : v);
      const backend = await startBackend();
      const server = await startServer({ patch: patchFor(backend) });
      const Impl = format === 'protobuf' ? CentrifugeProtobuf : CentrifugeJson;
      const clients = [];
      t.after(async () => {
        for (const c of clients) c.disconnect();
        await server.stop().catch(() => server.kill());
        await backend.close();
      });
      const connect = async (user) => {
        // No token: the connect proxy authenticates from the connect data.
        const c = new Impl(server.url, { websocket: WebSocket, data: enc({ user }), minReconnectDelay: 100 });
        clients.push(c);
        const rec = record(c, ['connected', 'disconnected', 'error']);
        c.connect();
        await waitFor(() => rec.count('connected') > 0 || rec.count('disconnected') > 0, `${user} to connect`, WAIT_MS);
        assert.equal(rec.count('connected'), 1, inspect(rec.events, { depth: 4 }));
        return { c, connected: rec.events.connected[0] };
      };

      const { c: alice, connected } = await connect('alice');
      assert.deepEqual(dec(connected.data), { welcome: true }, 'ConnectResult.data from the proxy');
      const connectRequest = backend.received.find((r) => r.route === 'connect');
      assert.equal(connectRequest.body.transport, 'websocket');
      assert.equal(connectRequest.body.protocol, format);
      const { c: bob } = await connect('bob');

      // Subscribe allowed by the proxy, with its data.
      const channel = unique('px:room');
      const sub = bob.newSubscription(channel);
      const subRec = record(sub, ['subscribed', 'unsubscribed', 'publication', 'error']);
      sub.subscribe();
      await waitFor(() => subRec.count('subscribed') > 0 || subRec.count('unsubscribed') > 0, 'subscribed', WAIT_MS);
      assert.equal(sub.state, 'subscribed', inspect(subRec.events, { depth: 4 }));
      assert.deepEqual(dec(subRec.events.subscribed[0].data), { hello: 'bob' });

      // Subscribe denied by the proxy: the SDK gives up with code 103.
      const denied = bob.newSubscription(unique('px:denied'));
      const deniedRec = record(denied, ['subscribed', 'unsubscribed', 'error']);
      denied.subscribe();
      await waitFor(() => deniedRec.count('unsubscribed') > 0 || deniedRec.count('subscribed') > 0, 'denied subscription to end', WAIT_MS);
      assert.equal(deniedRec.count('subscribed'), 0);
      assert.equal(deniedRec.events.unsubscribed[0].code, 103, inspect(deniedRec.events, { depth: 4 }));

      // A publication rewritten by the publish proxy.
      await alice.publish(channel, enc({ text: 'hi' }));
      await waitFor(() => subRec.count('publication') > 0, 'the publication', WAIT_MS);
      const pub = subRec.events.publication[0];
      assert.deepEqual(dec(pub.data), { rewritten: true, by: 'alice', original: { text: 'hi' } });
      assert.equal(pub.info.user, 'alice');

      // RPC round trip.
      const result = await alice.rpc('sum', enc({ a: 1, b: 2 }));
      assert.deepEqual(dec(result.data), { method: 'sum', echo: { a: 1, b: 2 }, user: 'alice' });

      // Map writes decided by the map publish / remove proxies: the backend's key, data and tags.
      const board = unique('pxmap:board');
      const map = bob.newMapSubscription(board);
      const mapRec = record(map, ['subscribed', 'unsubscribed', 'update', 'error']);
      map.subscribe();
      await waitFor(() => mapRec.count('subscribed') > 0 || mapRec.count('unsubscribed') > 0, 'the map subscription', WAIT_MS);
      assert.equal(map.state, 'subscribed', inspect(mapRec.events, { depth: 4 }));
      await alice.mapPublish(board, 'title', enc({ text: 'hello' }));
      await waitFor(() => mapRec.count('update') > 0, 'the proxied map write', WAIT_MS, mapRec);
      const update = mapRec.events.update[0];
      assert.equal(update.key, 'alice:title');
      assert.deepEqual(dec(update.data), { by: 'alice', original: { text: 'hello' } });
      assert.deepEqual(update.tags, { owner: 'alice' });
      const publishRequest = backend.received.find((r) => r.route === 'map_publish');
      assert.equal(publishRequest.body.channel, board);
      await assert.rejects(alice.mapPublish(board, 'forbidden', enc({})), (e) => e.code === 403);
      await assert.rejects(alice.mapRemove(board, 'locked-key'), (e) => e.code === 403);
      await alice.mapRemove(board, 'alice:title');
      await waitFor(() => mapRec.events.update.some((u) => u.removed), 'the proxied removal', WAIT_MS, mapRec);
    });
  });
}
