// Starts a real `spindle serve` for a test and talks to its HTTP side; signs tokens.
//
// The binary: $SPINDLE_BIN, else <target dir>/debug/spindle where the target dir is
// $CARGO_TARGET_DIR (relative to the repository root when relative) or <repo>/target.
// The config: tests/fixtures/spindle.json (shared with the Rust and Python suites), optionally
// patched per test, written to a temp dir.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..', '..', '..');
export const FIXTURE_PATH = path.join(REPO, 'tests', 'fixtures', 'spindle.json');
export const FIXTURE = JSON.parse(fs.readFileSync(FIXTURE_PATH, 'utf8'));
export const SECRET = FIXTURE.client.token.hmac_secret_key;
export const API_KEY = FIXTURE.http_api.key;

const START_TIMEOUT_MS = 20000;
const STOP_TIMEOUT_MS = 15000;
const LISTENING = 'spindle: listening on ';

export function binaryPath() {
  if (process.env.SPINDLE_BIN) return process.env.SPINDLE_BIN;
  let target = path.join(REPO, 'target');
  if (process.env.CARGO_TARGET_DIR) {
    target = path.isAbsolute(process.env.CARGO_TARGET_DIR)
      ? process.env.CARGO_TARGET_DIR
      : path.join(REPO, process.env.CARGO_TARGET_DIR);
  }
  return path.join(target, 'debug', 'spindle');
}

// Objects merged key by key (recursively); anything else replaces; null deletes.
export function merge(base, patch) {
  if (patch === undefined) return base;
  if (base === null || typeof base !== 'object' || Array.isArray(base) ||
      patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
    return patch;
  }
  const out = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = k in out ? merge(out[k], v) : v;
  }
  return out;
}

// --- tokens -------------------------------------------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString('base64url');

export function sign(claims, secret = SECRET) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest();
  return `${head}.${body}.${b64url(sig)}`;
}

const now = () => Math.floor(Date.now() / 1000);

// A connection token for `user`, valid for an hour (extra claims merged in).
export function token(user, extra = {}) {
  return sign({ sub: user, iat: now(), exp: now() + 3600, ...extra });
}

export function expiredToken(user) {
  return sign({ sub: user, iat: now() - 3600, exp: now() - 60 });
}

export function badlySignedToken(user) {
  return sign({ sub: user, iat: now(), exp: now() + 3600 }, 'not-the-secret-of-the-server');
}

let counter = 0;
export function unique(prefix) {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}

// A port that was free a moment ago on 127.0.0.1.
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// --- the server -----------------------------------------------------------------------------

// The configuration of a test engine (`SPINDLE_TEST_ENGINE`): `{}` for the default (memory).
function engineConfig(engine) {
  const unique = crypto.randomUUID().replaceAll('-', '').slice(0, 16);
  switch (engine ?? '') {
    case '':
    case 'memory':
      return {};
    case 'redis': {
      const address = process.env.SPINDLE_TEST_REDIS ?? 'redis://127.0.0.1:6379';
      return { engine: { type: 'redis', redis: { address, prefix: `spindle-js-${unique}` } } };
    }
    case 'postgres': {
      const dsn = process.env.SPINDLE_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';
      return { broker: { enabled: true, type: 'postgres', postgres: { dsn, table_prefix: `sjs_${unique}` } } };
    }
    default:
      throw new Error(`SPINDLE_TEST_ENGINE=${engine}: want memory, redis or postgres`);
  }
}

const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

export class Server {
  constructor(child, addr, dir) {
    this.child = child;
    this.host = addr.host;
    this.port = addr.port;
    this.dir = dir;
    this.stderr = '';
    this.stdout = '';
    this.exited = null;
  }

  get url() { return `ws://${this.hostPort}/connection/websocket`; }
  get httpUrl() { return `http://${this.hostPort}`; }
  get apiUrl() { return `${this.httpUrl}/api`; }
  get hostPort() { return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`; }

  // POST /api/<method> with the API key; the parsed JSON body. Non-200 throws.
  async api(method, body) {
    const res = await fetch(`${this.apiUrl}/${method}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-API-Key': API_KEY },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`API ${method} ${JSON.stringify(body)}: HTTP ${res.status} ${text}`);
    return JSON.parse(text);
  }

  // Like api() but throws on an `error` in the body; the `result`.
  async apiOk(method, body) {
    const reply = await this.api(method, body);
    if (reply.error) throw new Error(`API ${method} ${JSON.stringify(body)} failed: ${JSON.stringify(reply.error)}`);
    return reply.result;
  }

  // A server that panicked (in a background task, say) fails the test that ran it: throws with
  // the panic's report.
  checkNoPanic() {
    const at = this.stderr.indexOf(' panicked at ');
    if (at < 0) return;
    const from = this.stderr.lastIndexOf('\n', at) + 1;
    throw new Error(`spindle panicked during the test:\n${this.stderr.slice(from, from + 2000)}`);
  }

  // SIGTERM and wait for the exit; resolves to { code, signal }. Throws if the server panicked.
  async stop() {
    if (this.exited) {
      this.checkNoPanic();
      return this.exited;
    }
    const done = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    this.child.kill('SIGTERM');
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`spindle did not exit within ${STOP_TIMEOUT_MS} ms after SIGTERM (killed)\n--- spindle stderr ---\n${this.stderr}`));
      }, STOP_TIMEOUT_MS);
    });
    let status;
    try {
      status = await Promise.race([done, timeout]);
    } finally {
      clearTimeout(timer);
      this._cleanup();
    }
    this.checkNoPanic();
    return status;
  }

  // SIGKILL (a test's fault injection, or cleanup). Throws if the server had panicked.
  kill() {
    if (!this.exited) this.child.kill('SIGKILL');
    this._cleanup();
    this.checkNoPanic();
  }

  _cleanup() {
    running.delete(this.child);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// Starts `spindle <role> -c <fixture+patch> -p <port>` (role `serve`, `core` or `edge`) and
// waits for its listening line. Any failure throws an Error starting with "could not start spindle".
//
// With SPINDLE_TOPOLOGY=split, a `serve` started on any port is a split instead: one core and two
// edges (`startSplit`), seen through a `SplitServer` — clients on the first edge, the API on the
// core — so a suite written for `spindle serve` runs unchanged against the split.
//
// With SPINDLE_TEST_ENGINE=redis, every server runs on the Redis engine at $SPINDLE_TEST_REDIS
// (default redis://127.0.0.1:6379), under a key prefix of its own; with postgres, on the
// PostgreSQL broker at $SPINDLE_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test),
// under a table prefix of its own.
export async function startServer({ patch, port = 0, role = 'serve' } = {}) {
  if (role !== 'edge') patch = merge(engineConfig(process.env.SPINDLE_TEST_ENGINE), patch ?? {});
  if (role === 'serve' && port === 0 && process.env.SPINDLE_TOPOLOGY === 'split') {
    return new SplitServer(await startSplit({ cores: 1, edges: 2, patch }));
  }
  const bin = binaryPath();
  const fail = (reason) => new Error(`could not start spindle (${bin}): ${reason}`);
  if (!fs.existsSync(bin)) {
    throw fail('no such binary; build it with `cargo build -p spindle --bin spindle` (tests/sdk/run.sh does) or point SPINDLE_BIN at it');
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spindle-js-'));
  const configPath = path.join(dir, 'config.json');
  fs.writeFileSync(configPath, JSON.stringify(merge(FIXTURE, patch), null, 2));
  const child = spawn(bin, [role, '-c', configPath, '-p', String(port)], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  const logs = { stdout: '', stderr: '' };
  let server = null;
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    logs.stderr += chunk;
    if (server) server.stderr += chunk;
    if (process.env.SPINDLE_TEST_ECHO) process.stderr.write(`[spindle] ${chunk}`);
  });
  const lines = readline.createInterface({ input: child.stdout });
  const withLogs = (reason) => fail(`${reason}\n--- spindle stderr ---\n${logs.stderr}\n--- spindle stdout ---\n${logs.stdout}`);

  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(withLogs(`no \`${LISTENING}<ip>:<port>\` line on stdout within ${START_TIMEOUT_MS} ms`));
    }, START_TIMEOUT_MS);
    lines.on('line', (line) => {
      logs.stdout += `${line}\n`;
      if (server) server.stdout += `${line}\n`;
      if (!line.startsWith(LISTENING)) return;
      const rest = line.slice(LISTENING.length).trim();
      const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(rest);
      clearTimeout(timer);
      if (!m) {
        child.kill('SIGKILL');
        reject(withLogs(`cannot parse the listening line ${JSON.stringify(line)}`));
        return;
      }
      let host = m[1];
      if (host === '0.0.0.0') host = '127.0.0.1';
      if (host === '::') host = '::1';
      resolve({ host, port: Number(m[2]) });
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(withLogs(`spawn failed: ${e.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      // Give the stderr pipe a moment to deliver the last chunk.
      setTimeout(() => reject(withLogs(`it exited (code ${code}, signal ${signal}) without printing \`${LISTENING}<ip>:<port>\``)), 100);
    });
  }).catch((e) => {
    running.delete(child);
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  });
  if (port !== 0 && addr.port !== port) {
    child.kill('SIGKILL');
    throw withLogs(`asked for port ${port} but it listens on ${addr.port}`);
  }
  server = new Server(child, addr, dir);
  server.stderr = logs.stderr;
  server.stdout = logs.stdout;
  child.once('exit', (code, signal) => {
    server.exited = { code, signal };
    running.delete(child);
  });
  return server;
}

// --- the split: one core and some edges over the QUIC mesh ---------------------------------

// A split seen as one server: client URLs are the first edge's, the server API the core's.
export class SplitServer {
  constructor(split) {
    this.split = split;
    this.edge = split.edges[0];
    this.core = split.core;
  }

  get url() { return this.edge.url; }
  get httpUrl() { return this.edge.httpUrl; }
  get hostPort() { return this.edge.hostPort; }
  get apiUrl() { return this.core.apiUrl; }
  get host() { return this.edge.host; }
  get port() { return this.edge.port; }
  get stderr() { return [this.core, ...this.split.edges].map((s) => s.stderr).join('\n'); }
  api(method, body) { return this.core.api(method, body); }
  apiOk(method, body) { return this.core.apiOk(method, body); }
  checkNoPanic() { for (const s of [this.core, ...this.split.edges]) s.checkNoPanic(); }
  async stop() {
    await this.split.stop();
    return { code: 0, signal: null };
  }
  kill() { for (const s of [...this.split.edges, ...this.split.cores]) s.kill(); }
}

async function freeUdpPort() {
  const dgram = await import('node:dgram');
  const socket = dgram.createSocket('udp4');
  await new Promise((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise((resolve) => socket.close(resolve));
  return port;
}

// `spindle core` and `edges` × `spindle edge` (certificates from `spindle mesh gencerts`), each
// edge linked (its /health 200). Returns { core, edges, stop() }.
export async function startSplit({ cores = 1, edges = 2, patch } = {}) {
  const { execFileSync } = await import('node:child_process');
  const certs = fs.mkdtempSync(path.join(os.tmpdir(), 'spindle-js-certs-'));
  const coreNames = Array.from({ length: cores }, (_, i) => `core${i + 1}`);
  const names = [...coreNames, ...Array.from({ length: edges }, (_, i) => `edge${i + 1}`)];
  execFileSync(binaryPath(), ['mesh', 'gencerts', '--out', certs, '--nodes', names.join(',')]);
  const tls = (node) => ({
    cert_file: path.join(certs, `${node}.pem`),
    key_file: path.join(certs, `${node}.key`),
    ca_file: path.join(certs, 'ca.pem'),
  });
  const meshPorts = [];
  const startedCores = [];
  for (const name of coreNames) {
    const meshPort = await freeUdpPort();
    meshPorts.push(meshPort);
    startedCores.push(await startServer({
      role: 'core',
      patch: merge(patch, { mesh: { listen: `127.0.0.1:${meshPort}`, node_name: name, tls: tls(name) } }),
    }));
  }
  const started = [];
  for (let i = 1; i <= edges; i++) {
    const edge = await startServer({
      role: 'edge',
      patch: merge(patch, { mesh: { cores: meshPorts.map((p) => `127.0.0.1:${p}`), node_name: `edge${i}`, tls: tls(`edge${i}`) } }),
    });
    const deadline = Date.now() + 15000;
    for (;;) {
      const r = await fetch(`http://${edge.hostPort}/health`).catch(() => null);
      if (r && r.status === 200) break;
      if (Date.now() > deadline) throw new Error(`edge${i} not linked to its core within 15 s:\n${edge.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    started.push(edge);
  }
  return {
    core: startedCores[0],
    cores: startedCores,
    edges: started,
    // Stops every process, then throws the first failure (one that panicked or did not stop).
    async stop() {
      const failures = [];
      for (const s of [...started, ...startedCores]) {
        try {
          await s.stop();
        } catch (error) {
          failures.push(error);
          try { s.kill(); } catch { /* the same failure, reported once */ }
        }
      }
      fs.rmSync(certs, { recursive: true, force: true });
      if (failures.length > 0) throw failures[0];
    },
  };
}
