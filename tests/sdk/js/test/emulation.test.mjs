// centrifuge-js over the HTTP emulation transports against a real spindle binary: HTTP-streaming
// (JSON and Protobuf) and SSE (JSON, with the `eventsource` polyfill), both sending commands
// after connect to `/emulation`. Connect, subscribe, publish, history and recovery on each.
// The fixture (tests/fixtures/spindle.json) enables `http_stream` and `sse`.
//
//   cd tests/sdk/js && node --test --test-concurrency=1 test/emulation.test.mjs   (or ../run.sh)

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { inspect } from 'node:util';

import { Centrifuge as CentrifugeJson } from 'centrifuge';
import { Centrifuge as CentrifugeProtobuf } from 'centrifuge/build/protobuf';
import { EventSource } from 'eventsource';

import { startServer, token, unique } from '../lib/spindle.mjs';
import { record, waitFor } from '../lib/wait.mjs';

const TEST_TIMEOUT_MS = 60000;
const WAIT_MS = 8000;

const CLIENT_EVENTS = ['connecting', 'connected', 'disconnected', 'error'];
const SUB_EVENTS = ['subscribing', 'subscribed', 'unsubscribed', 'publication', 'error'];

// Each variant: the transport list given to the SDK, its encoding, the transport name expected
// in the `connected` event.
const VARIANTS = [
  { name: 'http_stream json', transport: 'http_stream', format: 'json' },
  { name: 'http_stream protobuf', transport: 'http_stream', format: 'protobuf' },
  { name: 'sse', transport: 'sse', format: 'json' },
];

for (const variant of VARIANTS) {
  describe(`centrifuge-js over ${variant.name}`, { concurrency: 1 }, () => {
    test('connect, subscribe, publish, history, recovery', { timeout: TEST_TIMEOUT_MS }, async () => {
      const server = await startServer();
      const Impl = variant.format === 'protobuf' ? CentrifugeProtobuf : CentrifugeJson;
      const enc = (value) => (variant.format === 'protobuf'
        ? new TextEncoder().encode(JSON.stringify(value))
        : value);
      const dec = (value) => (variant.format === 'protobuf'
        ? JSON.parse(new TextDecoder().decode(value))
        : value);
      const endpoint = `${server.httpUrl}/connection/${variant.transport}`;
      const c = new Impl([{ transport: variant.transport, endpoint }], {
        token: token(unique('emu')),
        emulationEndpoint: `${server.httpUrl}/emulation`,
        eventsource: EventSource,
        minReconnectDelay: 100,
        maxReconnectDelay: 300,
      });
      try {
        const crec = record(c, CLIENT_EVENTS);
        c.connect();
        await waitFor(() => crec.count('connected') >= 1, 'connected', WAIT_MS, crec);
        assert.equal(crec.events.connected[0].transport, variant.transport);

        // Client publish into a chat channel, received back.
        const chat = unique('chat:emu');
        const chatSub = c.newSubscription(chat);
        const chatRec = record(chatSub, SUB_EVENTS);
        chatSub.subscribe();
        await waitFor(() => chatRec.count('subscribed') >= 1, `subscribed to ${chat}`, WAIT_MS, chatRec);
        await chatSub.publish(enc({ hello: variant.name }));
        await waitFor(() => chatRec.count('publication') >= 1, 'own publication', WAIT_MS, chatRec);
        assert.deepEqual(dec(chatRec.events.publication[0].data), { hello: variant.name });

        // API publications into a recoverable channel, then history.
        const channel = unique('rec:emu');
        const sub = c.newSubscription(channel);
        const rec = record(sub, SUB_EVENTS);
        sub.subscribe();
        await waitFor(() => rec.count('subscribed') >= 1, `subscribed to ${channel}`, WAIT_MS, rec);
        for (let n = 1; n <= 3; n++) await server.apiOk('publish', { channel, data: { n } });
        await waitFor(() => rec.count('publication') >= 3, '3 publications', WAIT_MS, rec);
        const history = await sub.history({ limit: 10 });
        assert.deepEqual(history.publications.map((p) => dec(p.data).n), [1, 2, 3]);

        // Away while 2 more are published; back with both recovered.
        c.disconnect();
        await waitFor(() => c.state === 'disconnected', 'disconnected', WAIT_MS, crec);
        for (let n = 4; n <= 5; n++) await server.apiOk('publish', { channel, data: { n } });
        c.connect();
        await waitFor(() => rec.count('subscribed') >= 2, 'the resubscribe', WAIT_MS, rec);
        const ctx = rec.events.subscribed[1];
        assert.equal(ctx.wasRecovering, true, inspect(ctx));
        assert.equal(ctx.recovered, true, inspect(ctx));
        await waitFor(() => rec.count('publication') >= 5, '5 publications', WAIT_MS, rec);
        assert.deepEqual(rec.events.publication.map((p) => dec(p.data).n), [1, 2, 3, 4, 5]);
      } finally {
        c.disconnect();
        await server.stop();
      }
    });
  });
}
