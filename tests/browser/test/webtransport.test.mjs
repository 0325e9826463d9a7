// centrifuge-js's `webtransport` transport in headless Chromium (Debian's `chromium`, driven by
// playwright-core) against a real `spindle serve` with HTTP/3: connect, subscribe, receive an
// API publication, then the disconnect push of an API disconnect, in JSON and Protobuf.
//
// The server's certificate is self-signed ECDSA P-256 valid for 10 days (made with openssl), so
// the page pins it with `serverCertificateHashes` (Chromium accepts pinning only for such
// certificates, at most 14 days). The page is served from http://127.0.0.1 (a secure context,
// which WebTransport needs) by a tiny HTTP server here; the API is reached on the plain
// internal port.
//
// Environment: $CHROMIUM (browser binary, default /usr/bin/chromium), $CHROMIUM_EXTRA_ARGS
// (space-separated flags, e.g. `--enable-logging=stderr --v=1` with DEBUG=pw:browser to see
// why a handshake failed), $SPINDLE_BIN / $CARGO_TARGET_DIR (the server binary).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { API_KEY, freePort, startServer, token, unique } from '../../sdk/js/lib/spindle.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DIST = path.join(HERE, '..', 'node_modules', 'centrifuge', 'dist');
const STEP_MS = 15000;

// Debian's chromium: $CHROMIUM, else the first of these that exists.
function chromiumPath() {
  const candidates = [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'];
  const found = candidates.find((p) => p && fs.existsSync(p));
  if (!found) throw new Error('chromium is not installed (apt-get install -y chromium; scripts/test.sh does)');
  return found;
}

// A self-signed ECDSA P-256 certificate for 127.0.0.1 in `dir`; its SHA-256 hash (of the DER).
function makeCertificate(dir) {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-days', '10', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', key, '-out', cert,
  ], { stdio: 'pipe' });
  const der = new crypto.X509Certificate(fs.readFileSync(cert)).raw;
  return { cert, key, hash: [...crypto.createHash('sha256').update(der).digest()] };
}

// Serves the test page and the centrifuge-js bundles on 127.0.0.1.
async function pageServer() {
  const files = {
    '/centrifuge.js': path.join(DIST, 'centrifuge.js'),
    '/centrifuge.protobuf.js': path.join(DIST, 'centrifuge.protobuf.js'),
  };
  const server = http.createServer((req, res) => {
    const file = files[req.url];
    if (file) {
      res.writeHead(200, { 'Content-Type': 'text/javascript' });
      res.end(fs.readFileSync(file));
    } else {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<!doctype html><title>spindle webtransport</title>');
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

async function api(internal, method, body) {
  const res = await fetch(`http://127.0.0.1:${internal}/api/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-API-Key': API_KEY },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `API ${method}: ${text}`);
  const reply = JSON.parse(text);
  assert.equal(reply.error, undefined, `API ${method}: ${text}`);
  return reply.result;
}

// Runs in the page: a Centrifuge client over WebTransport only, recording what happens.
function openClient({ endpoint, hash, tokenValue, channel, protobuf }) {
  // centrifuge-js 5.8 constructs `globalThis.WebTransport` with the URL alone (it ignores an
  // `options.webtransport`), so the certificate pin goes into a subclass put in its place.
  const Native = globalThis.WebTransport;
  globalThis.WebTransport = class extends Native {
    constructor(url, options) {
      const pin = [{ algorithm: 'sha-256', value: new Uint8Array(hash) }];
      super(url, { ...options, serverCertificateHashes: pin });
    }
  };
  window.events = [];
  const record = (kind, ctx) => window.events.push({ kind, ...JSON.parse(JSON.stringify(ctx ?? {})) });
  const client = new Centrifuge([{ transport: 'webtransport', endpoint }], {
    token: tokenValue,
    protocol: protobuf ? 'protobuf' : 'json',
    minReconnectDelay: 60000,
    maxReconnectDelay: 60000,
  });
  client.on('connected', (ctx) => record('connected', { transport: ctx.transport, client: ctx.client }));
  client.on('disconnected', (ctx) => record('disconnected', ctx));
  client.on('error', (ctx) => record('error', { message: String(ctx.error?.message ?? ctx.error) }));
  const sub = client.newSubscription(channel);
  sub.on('subscribed', () => record('subscribed'));
  sub.on('publication', (ctx) => {
    const data = ctx.data instanceof Uint8Array ? JSON.parse(new TextDecoder().decode(ctx.data)) : ctx.data;
    record('publication', { data });
  });
  sub.subscribe();
  client.connect();
}

async function waitEvent(page, kind) {
  try {
    await page.waitForFunction((k) => window.events.some((e) => e.kind === k), kind, { timeout: STEP_MS });
  } catch (e) {
    const events = await page.evaluate(() => window.events);
    throw new Error(`no ${kind} event within ${STEP_MS} ms; events: ${JSON.stringify(events)}`);
  }
  return page.evaluate((k) => window.events.find((e) => e.kind === k), kind);
}

for (const protobuf of [false, true]) {
  test(`webtransport in chromium (${protobuf ? 'protobuf' : 'json'})`, async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spindle-browser-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const tls = makeCertificate(dir);
    const internal = await freePort();
    const server = await startServer({
      patch: {
        http_server: {
          tls: { enabled: true, cert_pem: tls.cert, key_pem: tls.key },
          http3: { enabled: true },
          internal_port: internal,
          tls_external: true,
        },
        webtransport: { enabled: true },
        client: { allowed_origins: ['http://127.0.0.1:*'] },
      },
    });
    t.after(() => server.kill());
    const pages = await pageServer();
    t.after(() => pages.server.close());
    const browser = await chromium.launch({
      executablePath: chromiumPath(),
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', ...(process.env.CHROMIUM_EXTRA_ARGS ? process.env.CHROMIUM_EXTRA_ARGS.split(' ') : [])],
    });
    t.after(() => browser.close());
    const page = await browser.newPage();
    const logs = [];
    page.on('console', (m) => logs.push(m.text()));
    await page.goto(pages.url);
    await page.addScriptTag({ url: protobuf ? '/centrifuge.protobuf.js' : '/centrifuge.js' });

    const user = unique('browser');
    const channel = unique('chat:browser');
    await page.evaluate(openClient, {
      endpoint: `https://127.0.0.1:${server.port}/connection/webtransport`,
      hash: tls.hash,
      tokenValue: token(user),
      channel,
      protobuf,
    });
    let connected;
    try {
      connected = await waitEvent(page, 'connected');
    } catch (e) {
      e.message += `\nconsole: ${logs.join('\n')}\n--- spindle stderr ---\n${server.stderr}`;
      throw e;
    }
    assert.equal(connected.transport, 'webtransport');
    await waitEvent(page, 'subscribed');

    await api(internal, 'publish', { channel, data: { n: 1 } });
    const publication = await waitEvent(page, 'publication');
    assert.deepEqual(publication.data, { n: 1 });

    await api(internal, 'disconnect', { user });
    const disconnected = await waitEvent(page, 'disconnected');
    assert.equal(disconnected.code, 3503, JSON.stringify(disconnected));
  });
}
