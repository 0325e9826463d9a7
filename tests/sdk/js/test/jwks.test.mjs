// centrifuge-js against spindle with `client.token.jwks_public_endpoint`: the keys come from an
// identity provider (a node HTTP server in this file serving a JWK set made with node:crypto),
// in JSON and Protobuf. The client connects with an RS256 token, the provider rotates to a new
// key, the SDK's `getToken` hands over a token signed with the new key when the first expires
// (the server fetches the set again for the unknown kid) and the client stays connected and
// keeps receiving; a token of the retired key is refused with 3500.
//
//   cd tests/sdk/js && node --test --test-concurrency=1 test/jwks.test.mjs   (or ../run.sh js)

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';

import { Centrifuge as CentrifugeJson } from 'centrifuge';
import { Centrifuge as CentrifugeProtobuf } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';

import { startServer, unique } from '../lib/spindle.mjs';
import { record, waitFor } from '../lib/wait.mjs';

const TEST_TIMEOUT_MS = 45000;
const WAIT_MS = 8000;
// Connection tokens live this long, so the SDK refreshes within the test.
const TOKEN_TTL_S = 3;

// An RSA signing key with its public JWK under `kid`.
function newKey(kid) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  return { kid, privateKey, jwk };
}

function rs256(key, claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const signed = `${b64({ alg: 'RS256', typ: 'JWT', kid: key.kid })}.${b64(claims)}`;
  const signature = crypto.sign('sha256', Buffer.from(signed), key.privateKey).toString('base64url');
  return `${signed}.${signature}`;
}

const now = () => Math.floor(Date.now() / 1000);

// The identity provider: GET /jwks serves the current keys; every request is counted.
async function startProvider() {
  const provider = { keys: [], requests: 0 };
  const server = http.createServer((req, res) => {
    provider.requests += 1;
    if (req.url !== '/jwks') {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    return res.end(JSON.stringify({ keys: provider.keys.map((k) => k.jwk) }));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  provider.url = `http://127.0.0.1:${server.address().port}/jwks`;
  provider.close = () => new Promise((resolve) => server.close(resolve));
  return provider;
}

for (const format of ['json', 'protobuf']) {
  describe(`centrifuge-js ${format} with a JWKS endpoint`, { concurrency: 1 }, () => {
    test('keys rotate while the client stays connected', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const provider = await startProvider();
      const server = await startServer({
        patch: { client: { token: { hmac_secret_key: null, jwks_public_endpoint: provider.url } } },
      });
      const clients = [];
      t.after(async () => {
        for (const c of clients) c.disconnect();
        await server.stop();
        await provider.close();
      });
      const Impl = format === 'protobuf' ? CentrifugeProtobuf : CentrifugeJson;
      const enc = (v) => (format === 'protobuf' ? new TextEncoder().encode(JSON.stringify(v)) : v);
      const dec = (v) => (format === 'protobuf' ? JSON.parse(new TextDecoder().decode(v)) : v);

      const first = newKey('key-1');
      const second = newKey('key-2');
      provider.keys = [first];
      let signing = first;
      const issued = [];
      const tokenFor = (user) => {
        const token = rs256(signing, { sub: user, iat: now(), exp: now() + TOKEN_TTL_S });
        issued.push(signing.kid);
        return token;
      };

      const c = new Impl(server.url, {
        websocket: WebSocket,
        minReconnectDelay: 100,
        maxReconnectDelay: 500,
        token: tokenFor('alice'),
        getToken: async () => tokenFor('alice'),
      });
      clients.push(c);
      const rec = record(c, ['connected', 'disconnected', 'error']);
      c.connect();
      await waitFor(() => rec.count('connected') === 1, 'connect with key-1', WAIT_MS, rec);

      const channel = unique('chat:jwks');
      const sub = c.newSubscription(channel);
      const subRec = record(sub, ['subscribed', 'publication', 'unsubscribed']);
      sub.subscribe();
      await waitFor(() => subRec.count('subscribed') === 1, 'subscribed', WAIT_MS, subRec);
      await server.apiOk('publish', { channel, data: { n: 1 } });
      await waitFor(() => subRec.count('publication') === 1, 'publication 1', WAIT_MS, subRec);

      // The provider rotates; from now on tokens are signed with key-2.
      provider.keys = [second];
      signing = second;
      await waitFor(() => issued.includes('key-2'), 'getToken after expiry', WAIT_MS, rec);
      // Past the first token's expiry plus the refresh: still the same connection.
      await sleep((TOKEN_TTL_S + 1) * 1000);
      assert.equal(c.state, 'connected', inspect(rec.events, { depth: 4 }));
      assert.equal(rec.count('connected'), 1, 'never reconnected');
      assert.equal(rec.count('disconnected'), 0, inspect(rec.events.disconnected));
      await server.apiOk('publish', { channel, data: { n: 2 } });
      await waitFor(() => subRec.count('publication') === 2, 'publication 2', WAIT_MS, subRec);
      assert.deepEqual(dec(subRec.events.publication[1].data), { n: 2 });
      assert.ok(provider.requests >= 2, `the set was fetched again (${provider.requests})`);

      // A token of the retired key is refused (3500: the SDK stops).
      const stale = new Impl(server.url, {
        websocket: WebSocket,
        token: rs256(first, { sub: 'bob', exp: now() + 60 }),
      });
      clients.push(stale);
      const staleRec = record(stale, ['connected', 'disconnected']);
      stale.connect();
      await waitFor(() => staleRec.count('disconnected') === 1, 'retired key refused', WAIT_MS, staleRec);
      assert.equal(staleRec.events.disconnected[0].code, 3500, inspect(staleRec.events.disconnected));
      assert.equal(staleRec.count('connected'), 0);

      // Client publish with the new key's connection works end to end.
      const other = new Impl(server.url, { websocket: WebSocket, token: rs256(second, { sub: 'carol' }) });
      clients.push(other);
      const otherRec = record(other, ['connected']);
      other.connect();
      await waitFor(() => otherRec.count('connected') === 1, 'connect with key-2', WAIT_MS, otherRec);
      const otherSub = other.newSubscription(channel);
      otherSub.subscribe();
      await otherSub.ready(WAIT_MS);
      await otherSub.publish(enc({ from: 'carol' }));
      await waitFor(() => subRec.count('publication') === 3, 'carol\'s publication', WAIT_MS, subRec);
      assert.deepEqual(dec(subRec.events.publication[2].data), { from: 'carol' });
    });
  });
}
