#!/usr/bin/env node
// Drives centrifuge-js (npm `centrifuge`) through the golden flow against server.mjs and asserts
// every SDK-visible outcome. Exits 0 on success, 1 with a message on the first mismatch or after
// a 20 s overall timeout.
//
//   node drive_js.mjs --url ws://127.0.0.1:PORT/connection/websocket --format json|protobuf

import fs from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual, inspect } from 'node:util';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FIX = JSON.parse(fs.readFileSync(path.join(HERE, 'fixture.json'), 'utf8'));

const args = process.argv.slice(2);
const arg = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const url = arg('--url');
const format = arg('--format') || 'json';
if (!url || !['json', 'protobuf'].includes(format)) {
  console.error('usage: node drive_js.mjs --url ws://127.0.0.1:PORT/connection/websocket --format json|protobuf');
  process.exit(2);
}
const label = `js-${format}`;

// The protobuf build is a separate entry point of the package (see its "exports").
const { Centrifuge } = format === 'protobuf' ? await import('centrifuge/build/protobuf') : await import('centrifuge');
const sdkVersion = JSON.parse(fs.readFileSync(path.join(HERE, 'node_modules/centrifuge/package.json'), 'utf8')).version;

let step = 'start';
function fail(msg) {
  console.error(`FAIL ${label} (centrifuge-js ${sdkVersion}) at step "${step}": ${msg}`);
  process.exit(1);
}
const overall = setTimeout(() => fail('overall timeout of 20 s'), 20000);
process.on('uncaughtException', (e) => fail(`exception: ${e.stack || e}`));
process.on('unhandledRejection', (e) => fail(`unhandled rejection: ${inspect(e, { depth: 4 })}`));

function eq(got, want, what) {
  if (!isDeepStrictEqual(got, want)) fail(`${what}: got ${inspect(got, { depth: 6 })}, want ${inspect(want, { depth: 6 })}`);
}

// Payloads: JSON values with the JSON codec; with protobuf the SDK takes and gives raw bytes, which
// hold the UTF-8 of the JSON text.
const enc = (v) => (format === 'protobuf' ? new TextEncoder().encode(JSON.stringify(v)) : v);
const dec = (v) => {
  if (format !== 'protobuf' || v === undefined || v === null) return v;
  if (!(v instanceof Uint8Array)) fail(`expected bytes in protobuf mode, got ${inspect(v)}`);
  return JSON.parse(new TextDecoder().decode(v));
};
// Protobuf has no "absent" for bytes: the protobuf build exposes an unset field as empty bytes.
const present = (v) => v !== undefined && v !== null && !(v instanceof Uint8Array && v.length === 0);
const num = (v) => (typeof v === 'object' && v !== null && typeof v.toNumber === 'function' ? v.toNumber() : v);

// ClientInfo as the SDK exposes it -> the fixture's logical form.
function info(ci) {
  const out = { user: ci.user, client: ci.client };
  if (present(ci.connInfo)) out.conn_info = dec(ci.connInfo);
  if (present(ci.chanInfo)) out.chan_info = dec(ci.chanInfo);
  return out;
}
// Publication context -> the fixture's logical form (epoch is not exposed by the SDK).
function pubView(p) {
  const out = { data: dec(p.data) };
  if (p.info) out.info = info(p.info);
  out.offset = num(p.offset);
  if (p.tags && Object.keys(p.tags).length > 0) out.tags = { ...p.tags };
  return out;
}
const fixPub = (p) => {
  const { epoch, ...rest } = p; // eslint-disable-line no-unused-vars
  return rest;
};

async function until(cond, what) {
  while (!cond()) {
    await new Promise((r) => setTimeout(r, 5));
  }
}

const seen = { connecting: [], connected: [], disconnected: [], subscribing: [], subscribed: [], pubs: [], connTokens: 0, subTokens: 0 };

const client = new Centrifuge(url, {
  websocket: WebSocket,
  token: FIX.tokens.conn,
  getToken: async () => {
    seen.connTokens++;
    return FIX.tokens.conn_refreshed;
  },
  minReconnectDelay: 100,
  maxReconnectDelay: 200,
});
client.on('connecting', (ctx) => seen.connecting.push(ctx));
client.on('connected', (ctx) => seen.connected.push(ctx));
client.on('disconnected', (ctx) => {
  seen.disconnected.push(ctx);
  if (step !== 'disconnect') fail(`unexpected disconnected event ${inspect(ctx)}`);
});
client.on('error', (ctx) => fail(`client error event ${inspect(ctx, { depth: 4 })}`));

// 1. connect
step = 'connect';
client.connect();
await until(() => seen.connected.length === 1);
eq(seen.connected[0].client, FIX.client_id, 'connected client id');
eq(seen.connected[0].transport, 'websocket', 'connected transport');

// 2. subscribe with recovery
step = 'subscribe';
const sub = client.newSubscription(FIX.channel, {
  token: FIX.tokens.sub,
  getToken: async (ctx) => {
    eq(ctx.channel, FIX.channel, 'sub getToken channel');
    seen.subTokens++;
    return FIX.tokens.sub_refreshed;
  },
  recoverable: true,
  positioned: true,
  minResubscribeDelay: 100,
  maxResubscribeDelay: 200,
});
sub.on('subscribing', (ctx) => seen.subscribing.push(ctx));
sub.on('subscribed', (ctx) => seen.subscribed.push(ctx));
sub.on('publication', (ctx) => seen.pubs.push(ctx));
sub.on('unsubscribed', (ctx) => fail(`unexpected unsubscribed event ${inspect(ctx)}`));
sub.on('error', (ctx) => fail(`subscription error event ${inspect(ctx, { depth: 4 })}`));
sub.subscribe();
await until(() => seen.subscribed.length === 1);
{
  const s = seen.subscribed[0];
  eq([s.channel, s.recoverable, s.positioned, s.wasRecovering, s.recovered],
    [FIX.channel, true, true, false, false], 'subscribed [channel, recoverable, positioned, wasRecovering, recovered]');
  eq({ offset: num(s.streamPosition.offset), epoch: s.streamPosition.epoch }, { offset: 0, epoch: FIX.epoch }, 'subscribed streamPosition');
}

// 3. two live publications
step = 'live publications';
await until(() => seen.pubs.length >= 2);
eq(seen.pubs.map(pubView), FIX.publications.slice(0, 2).map(fixPub), 'live publications');
eq(seen.pubs.map((p) => p.channel), [FIX.channel, FIX.channel], 'live publication channels');

// 4. publish
step = 'publish';
eq(await sub.publish(enc(FIX.publish_data)), {}, 'publish result');

// 5. history: limit, then limit + since
step = 'history';
{
  const h = await sub.history({ limit: FIX.history_limit });
  eq({ offset: num(h.offset), epoch: h.epoch }, { offset: 2, epoch: FIX.epoch }, 'history position');
  eq(h.publications.map(pubView), FIX.publications.slice(0, 2).map(fixPub), 'history publications');
}
step = 'history since';
{
  const h = await sub.history({ limit: FIX.history_limit, since: { offset: FIX.history_since_offset, epoch: FIX.epoch } });
  eq({ offset: num(h.offset), epoch: h.epoch }, { offset: 2, epoch: FIX.epoch }, 'history(since) position');
  eq(h.publications.map(pubView), FIX.publications.slice(FIX.history_since_offset, 2).map(fixPub), 'history(since) publications');
}

// 6. presence
step = 'presence';
{
  const p = await sub.presence();
  const clients = {};
  for (const [k, v] of Object.entries(p.clients)) clients[k] = info(v);
  eq(clients, FIX.presence, 'presence clients');
}

// 7. presence stats
step = 'presence_stats';
{
  const ps = await sub.presenceStats();
  eq({ num_clients: ps.numClients, num_users: ps.numUsers }, FIX.presence_stats, 'presence stats');
}

// 8. rpc
step = 'rpc';
{
  const r = await client.rpc(FIX.rpc.method, enc(FIX.rpc.data));
  eq(dec(r.data), FIX.rpc.result, 'rpc result data');
}

// 9. token refreshes (the server replied ttl 2 to connect and subscribe)
step = 'refresh + sub_refresh';
await until(() => seen.connTokens >= 1 && seen.subTokens >= 1);

// 10-11. the server pings once both refreshes are answered, and closes with 3001 after the pong:
// the SDK reconnects and resubscribes with recovery.
step = 'ping/pong + shutdown + reconnect';
await until(() => seen.connected.length === 2);
{
  const c = seen.connecting.filter((x) => x.code === 3001);
  eq(c.map((x) => x.reason), ['shutdown'], 'connecting event for the 3001 close');
  eq(seen.connected[1].client, FIX.client_id, 'reconnected client id');
}
step = 'recovery';
await until(() => seen.subscribed.length === 2 && seen.pubs.length >= 4);
{
  const s = seen.subscribed[1];
  eq([s.recoverable, s.positioned, s.wasRecovering, s.recovered], [true, true, true, true],
    'resubscribed [recoverable, positioned, wasRecovering, recovered]');
  eq({ offset: num(s.streamPosition.offset), epoch: s.streamPosition.epoch }, { offset: 2, epoch: FIX.epoch }, 'resubscribed streamPosition');
  eq(seen.pubs.slice(2).map(pubView), FIX.publications.slice(2, 4).map(fixPub), 'recovered publications');
}
eq([seen.connTokens, seen.subTokens], [1, 1], 'getToken calls [connection, subscription]');

// 12. done
step = 'disconnect';
await new Promise((r) => setTimeout(r, 50)); // nothing else may arrive
eq(seen.pubs.length, 4, 'publication count');
client.disconnect();
await until(() => seen.disconnected.length === 1);
clearTimeout(overall);
console.log(`OK ${label} (centrifuge-js ${sdkVersion}): connected x2, 4 publications, publish, history x2, presence, presence_stats, rpc, refresh, sub_refresh, pong, recovery`);
process.exit(0);
