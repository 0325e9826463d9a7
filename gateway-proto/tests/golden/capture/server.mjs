#!/usr/bin/env node
// Fake Centrifugo v6 WebSocket server for the golden transcripts.
//
//   node server.mjs --capture <dir> --sdk js|py --sdk-version X --format json|protobuf [--port N]
//       Plays the scripted golden flow (see README.md) against one SDK driver, encoding the
//       replies itself (JSON, or protobufjs with gateway-proto/proto/client.proto), and writes
//       <dir>/transcript.json plus the exact bytes of every frame (NNN-in.* / NNN-out.*).
//
//   node server.mjs --replay <dir> [--port N]
//       Follows <dir>/transcript.json: every received WebSocket message must decode to the
//       commands (kinds and ids) of the next "in" event; then the bytes of the following "out"
//       files are sent verbatim (no re-encoding) and any "close" is performed.
//
// The first line on stdout is "LISTENING <port>". Diagnostics go to stderr. Exit code 0 when
// the flow / the transcript completed, 1 on any mismatch or on the timeout (--timeout seconds,
// default 30).

import fs from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual, inspect } from 'node:util';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import protobuf from 'protobufjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROTO_PATH = path.resolve(HERE, '../../../proto/client.proto');
const FIX = JSON.parse(fs.readFileSync(path.join(HERE, 'fixture.json'), 'utf8'));

// ---------------------------------------------------------------------------------------------
// Arguments

function parseArgs(argv) {
  const opts = { port: 0, timeout: 30 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) die(`missing value for ${a}`);
      return argv[++i];
    };
    switch (a) {
      case '--capture': opts.mode = 'capture'; opts.dir = next(); break;
      case '--replay': opts.mode = 'replay'; opts.dir = next(); break;
      case '--sdk': opts.sdk = next(); break;
      case '--sdk-version': opts.sdkVersion = next(); break;
      case '--format': opts.format = next(); break;
      case '--port': opts.port = Number(next()); break;
      case '--timeout': opts.timeout = Number(next()); break;
      default: die(`unknown argument ${a}`);
    }
  }
  if (!opts.mode) die('need --capture <dir> or --replay <dir>');
  if (opts.mode === 'capture') {
    if (!['js', 'py'].includes(opts.sdk)) die('--sdk js|py required in capture mode');
    if (!['json', 'protobuf'].includes(opts.format)) die('--format json|protobuf required in capture mode');
    if (!opts.sdkVersion) die('--sdk-version required in capture mode');
  }
  return opts;
}

function die(msg) {
  process.stderr.write(`server: ${msg}\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const tag = `[server ${opts.mode} ${path.basename(path.resolve(opts.dir))}]`;
const log = (...a) => process.stderr.write(`${tag} ${a.map((x) => (typeof x === 'string' ? x : inspect(x, { depth: 8, breakLength: 160 }))).join(' ')}\n`);

let finished = false;
function finish(code, msg) {
  if (finished) return;
  finished = true;
  if (code === 0) log(msg); else log(`FAIL: ${msg}`);
  // Give the close frame of a failing connection a moment to go out.
  setTimeout(() => process.exit(code), code === 0 ? 0 : 200);
}

const timer = setTimeout(() => finish(1, `timeout after ${opts.timeout}s (${progress()})`), opts.timeout * 1000);
timer.unref();

// ---------------------------------------------------------------------------------------------
// Schema and conversions between the logical (Centrifugo JSON) form and protobuf.
//
// Logical form: snake_case keys, zero values omitted, `bytes` fields hold the embedded JSON
// value itself (as Centrifugo writes them raw into JSON frames).

const root = new protobuf.Root();
root.loadSync(PROTO_PATH, { keepCase: true });
root.resolveAll();
const T = (name) => root.lookupType(`centrifugal.centrifuge.protocol.${name}`);
const Command = T('Command');
const Reply = T('Reply');

// Command kinds in the order Centrifugo dispatches them (docs/protocol.md §2.1).
const KINDS = ['connect', 'subscribe', 'unsubscribe', 'publish', 'presence', 'presence_stats',
  'history', 'rpc', 'send', 'refresh', 'sub_refresh'];

// Walks `obj` (of message type `type`) in field-number order, applying `onBytes` to bytes values
// and recursing into messages; unknown keys are an error.
function walk(type, obj, onBytes, where = type.name) {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new Error(`${where}: expected an object for message ${type.name}, got ${inspect(obj)}`);
  }
  for (const k of Object.keys(obj)) {
    if (!type.fields[k]) throw new Error(`${where}: unknown field ${type.name}.${k}`);
  }
  const out = {};
  for (const f of [...type.fieldsArray].sort((a, b) => a.id - b.id)) {
    if (!(f.name in obj) || obj[f.name] === undefined || obj[f.name] === null) continue;
    const one = (v, w) => {
      if (f.resolvedType instanceof protobuf.Type) return walk(f.resolvedType, v, onBytes, w);
      if (f.type === 'bytes') return onBytes(v, w);
      if (f.resolvedType instanceof protobuf.Enum) return v;
      if (typeof v === 'object' && v !== null && typeof v.toNumber === 'function') return v.toNumber();
      return v;
    };
    const v = obj[f.name];
    const w = `${where}.${f.name}`;
    if (f.map) {
      const m = {};
      for (const key of Object.keys(v)) m[key] = one(v[key], `${w}[${key}]`);
      out[f.name] = m;
    } else if (f.repeated) {
      out[f.name] = v.map((x, i) => one(x, `${w}[${i}]`));
    } else {
      out[f.name] = one(v, w);
    }
  }
  return out;
}

// Logical -> key order of Centrifugo's JSON (proto field order), validated against the schema.
const canonical = (type, obj) => walk(type, obj, (v) => v);
// Logical -> plain object for protobufjs fromObject (bytes = UTF-8 of the embedded JSON).
const toProtoPlain = (type, obj) => walk(type, obj, (v) => Buffer.from(JSON.stringify(v), 'utf8'));
// Decoded protobuf (toObject) -> logical (bytes parsed as JSON).
const fromProtoPlain = (type, obj) => walk(type, obj, (v, w) => {
  const text = Buffer.from(v).toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${w}: bytes are not JSON: ${inspect(text)}`);
  }
});

function encodeReply(format, reply) {
  if (format === 'json') return Buffer.from(JSON.stringify(canonical(Reply, reply)), 'utf8');
  const msg = Reply.fromObject(toProtoPlain(Reply, reply));
  const err = Reply.verify(msg);
  if (err) throw new Error(`invalid Reply: ${err}`);
  return Buffer.from(Reply.encodeDelimited(msg).finish());
}

// One WebSocket message -> list of logical commands.
function decodeCommands(format, buf) {
  if (format === 'json') {
    const text = buf.toString('utf8');
    const lines = text.split('\n');
    // Centrifugo accepts at most one trailing newline; empty lines are a protocol error.
    if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
    return lines.map((line, i) => {
      if (line.trim() === '') throw new Error(`empty line ${i} in JSON frame ${inspect(text)}`);
      const obj = JSON.parse(line);
      return canonical(Command, obj);
    });
  }
  const reader = protobuf.Reader.create(new Uint8Array(buf));
  const out = [];
  while (reader.pos < reader.len) {
    const msg = Command.decodeDelimited(reader);
    const plain = Command.toObject(msg, { longs: Number, defaults: false, arrays: false, objects: false });
    out.push(fromProtoPlain(Command, plain));
  }
  if (out.length === 0) throw new Error('protobuf frame with no commands');
  return out;
}

function decodeReplies(format, buf) {
  if (format === 'json') return buf.toString('utf8').split('\n').map((l) => JSON.parse(l));
  const reader = protobuf.Reader.create(new Uint8Array(buf));
  const out = [];
  while (reader.pos < reader.len) {
    const msg = Reply.decodeDelimited(reader);
    out.push(fromProtoPlain(Reply, Reply.toObject(msg, { longs: Number, defaults: false })));
  }
  return out;
}

function kindOf(cmd) {
  for (const k of KINDS) if (cmd[k] !== undefined) return k;
  return 'pong';
}

const summary = (cmds) => cmds.map((c) => ({ kind: kindOf(c), id: c.id || 0 }));

function formatOf(ws) {
  return ws.protocol === 'centrifuge-protobuf' ? 'protobuf' : 'json';
}

// ---------------------------------------------------------------------------------------------
// Server

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: opts.port,
  // Centrifugo offers centrifuge-json and centrifuge-protobuf and echoes the requested one.
  handleProtocols: (protocols) => {
    if (protocols.has('centrifuge-protobuf')) return 'centrifuge-protobuf';
    if (protocols.has('centrifuge-json')) return 'centrifuge-json';
    return false;
  },
});
wss.on('listening', () => {
  process.stdout.write(`LISTENING ${wss.address().port}\n`);
});
wss.on('error', (e) => finish(1, `server error: ${e.message}`));

let progress = () => '';
if (opts.mode === 'capture') runCapture(); else runReplay();

// ---------------------------------------------------------------------------------------------
// Capture mode: scripted golden flow.

function runCapture() {
  const dir = path.resolve(opts.dir);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(dir)) {
    if (/^\d{3}-(in|out)\.(json|bin)$/.test(f) || f === 'transcript.json') fs.rmSync(path.join(dir, f));
  }
  const ext = opts.format === 'json' ? 'json' : 'bin';
  const events = [];
  let seq = 0;
  let conns = 0;
  const st = { refreshed: false, subRefreshed: false, pinged: false, ponged: false, recovered: false };
  progress = () => `${events.length} events, state ${JSON.stringify(st)}`;

  const pubs = FIX.publications;
  const nextFile = (dirn) => `${String(++seq).padStart(3, '0')}-${dirn}.${ext}`;

  wss.on('connection', (ws, req) => {
    const conn = ++conns;
    const format = formatOf(ws);
    log(`conn ${conn} opened: ${req.url} requested subprotocols=${JSON.stringify(req.headers['sec-websocket-protocol'] ?? null)} negotiated=${JSON.stringify(ws.protocol)}`);
    if (format !== opts.format) return fail(ws, `conn ${conn}: SDK negotiated ${format}, expected ${opts.format}`);
    if (conn > 2) return fail(ws, `unexpected connection #${conn}`);

    const send = (reply) => {
      const file = nextFile('out');
      const bytes = encodeReply(format, reply);
      fs.writeFileSync(path.join(dir, file), bytes);
      events.push({ dir: 'out', conn, file, reply: canonical(Reply, reply) });
      ws.send(bytes, { binary: format === 'protobuf' });
    };
    const close = (code, reason) => {
      events.push({ dir: 'close', conn, code, reason });
      ws.close(code, reason);
    };

    ws.on('message', (data, isBinary) => {
      if (finished) return;
      try {
        if (isBinary !== (format === 'protobuf')) {
          throw new Error(`conn ${conn}: ${isBinary ? 'binary' : 'text'} frame in ${format} mode`);
        }
        const buf = Buffer.from(data);
        const cmds = decodeCommands(format, buf);
        const file = nextFile('in');
        fs.writeFileSync(path.join(dir, file), buf);
        events.push({ dir: 'in', conn, file, commands: summary(cmds) });
        log(`conn ${conn} <- ${file}`, cmds);
        let closeAfter = false;
        for (const cmd of cmds) {
          if (handle(conn, cmd, send)) closeAfter = true;
        }
        if (st.refreshed && st.subRefreshed && !st.pinged) {
          st.pinged = true;
          send({}); // server ping: empty Reply
        }
        if (closeAfter) close(3001, 'shutdown');
      } catch (e) {
        fail(ws, e.stack || String(e));
      }
    });

    ws.on('close', (code, reason) => {
      log(`conn ${conn} closed: ${code} ${reason}`);
      if (finished) return;
      if (conn === 1 && !st.ponged) return finish(1, 'connection 1 closed before the flow reached the shutdown');
      if (conn === 2) {
        if (!st.recovered) return finish(1, 'connection 2 closed before recovery');
        const transcript = { sdk: opts.sdk, sdk_version: opts.sdkVersion, format: opts.format, events };
        fs.writeFileSync(path.join(dir, 'transcript.json'), formatTranscript(transcript));
        finish(0, `capture complete: ${events.length} events written to ${dir}`);
      }
    });
  });

  function expect(cond, msg) {
    if (!cond) throw new Error(msg);
  }
  function expectEq(got, want, what) {
    if (!isDeepStrictEqual(got, want)) throw new Error(`${what}: got ${inspect(got)}, want ${inspect(want)}`);
  }

  // Returns true when the connection must be closed after this frame's replies.
  function handle(conn, cmd, send) {
    const kind = kindOf(cmd);
    const id = cmd.id || 0;
    if (kind !== 'pong' && kind !== 'send') expect(id > 0, `${kind} without id`);
    const req = cmd[kind];
    switch (kind) {
      case 'connect': {
        expectEq(req.token, conn === 1 ? FIX.tokens.conn : FIX.tokens.conn_refreshed, `conn ${conn} connect token`);
        const res = { client: FIX.client_id, version: FIX.server_version, ping: FIX.ping, pong: true };
        if (conn === 1) Object.assign(res, { expires: true, ttl: FIX.ttl });
        send({ id, connect: res });
        return false;
      }
      case 'subscribe': {
        expectEq(req.channel, FIX.channel, 'subscribe channel');
        expectEq(req.token, conn === 1 ? FIX.tokens.sub : FIX.tokens.sub_refreshed, `conn ${conn} subscribe token`);
        expect(req.recoverable === true && req.positioned === true, 'subscribe without recoverable/positioned');
        if (conn === 1) {
          expect(!req.recover, 'first subscribe asks to recover');
          send({
            id,
            subscribe: { expires: true, ttl: FIX.ttl, recoverable: true, positioned: true, epoch: FIX.epoch },
          });
          send({ push: { channel: FIX.channel, pub: pubs[0] } });
          send({ push: { channel: FIX.channel, pub: pubs[1] } });
        } else {
          expectEq([req.recover, req.epoch, req.offset], [true, FIX.epoch, 2], 'resubscribe recover/epoch/offset');
          send({
            id,
            subscribe: {
              recoverable: true, positioned: true, epoch: FIX.epoch, offset: 2,
              recovered: true, was_recovering: true, publications: [pubs[2], pubs[3]],
            },
          });
          st.recovered = true;
        }
        return false;
      }
      case 'publish':
        expectEq(req, { channel: FIX.channel, data: FIX.publish_data }, 'publish request');
        send({ id, publish: {} });
        return false;
      case 'history': {
        expectEq(req.channel, FIX.channel, 'history channel');
        expectEq(req.limit, FIX.history_limit, 'history limit');
        expect(!req.reverse, 'history reverse');
        let list = [pubs[0], pubs[1]];
        if (req.since) {
          expectEq(req.since, { offset: FIX.history_since_offset, epoch: FIX.epoch }, 'history since');
          list = pubs.slice(FIX.history_since_offset, 2);
        }
        send({ id, history: { publications: list, epoch: FIX.epoch, offset: 2 } });
        return false;
      }
      case 'presence':
        expectEq(req, { channel: FIX.channel }, 'presence request');
        send({ id, presence: { presence: FIX.presence } });
        return false;
      case 'presence_stats':
        expectEq(req, { channel: FIX.channel }, 'presence_stats request');
        send({ id, presence_stats: FIX.presence_stats });
        return false;
      case 'rpc':
        expectEq(req, { method: FIX.rpc.method, data: FIX.rpc.data }, 'rpc request');
        send({ id, rpc: { data: FIX.rpc.result } });
        return false;
      case 'refresh':
        expect(conn === 1 && !st.refreshed, 'unexpected refresh');
        expectEq(req, { token: FIX.tokens.conn_refreshed }, 'refresh request');
        st.refreshed = true;
        send({ id, refresh: {} }); // expires:false, everything zero
        return false;
      case 'sub_refresh':
        expect(conn === 1 && !st.subRefreshed, 'unexpected sub_refresh');
        expectEq(req, { channel: FIX.channel, token: FIX.tokens.sub_refreshed }, 'sub_refresh request');
        st.subRefreshed = true;
        send({ id, sub_refresh: {} });
        return false;
      case 'pong':
        expect(st.pinged && !st.ponged, 'pong without an outstanding ping');
        expectEq(cmd, {}, 'pong command');
        st.ponged = true;
        return true;
      default:
        throw new Error(`unexpected command ${inspect(cmd)}`);
    }
  }
}

// One event per line: readable diffs, still plain JSON.
function formatTranscript(t) {
  const head = JSON.stringify({ sdk: t.sdk, sdk_version: t.sdk_version, format: t.format });
  const lines = t.events.map((e) => '  ' + JSON.stringify(e));
  return `${head.slice(0, -1)},"events":[\n${lines.join(',\n')}\n]}\n`;
}

function fail(ws, msg) {
  try {
    ws.close(4500, 'golden server failure');
  } catch {
    // already closed
  }
  finish(1, msg);
}

// ---------------------------------------------------------------------------------------------
// Replay mode: follow transcript.json, sending the recorded out files verbatim.

function runReplay() {
  const dir = path.resolve(opts.dir);
  const t = JSON.parse(fs.readFileSync(path.join(dir, 'transcript.json'), 'utf8'));
  const events = t.events;
  let pos = 0;
  let conns = 0;
  let open = 0;
  progress = () => `at event ${pos} of ${events.length}: ${JSON.stringify(events[pos] ?? 'end')}`;
  // Pre-load the files so a missing one is reported before any client connects.
  const bytes = new Map();
  for (const e of events) {
    if (e.file) bytes.set(e.file, fs.readFileSync(path.join(dir, e.file)));
  }
  // Semantic cross-check of the out files against the logical replies (warnings only: the
  // acceptance test is what the SDK driver asserts).
  for (const e of events) {
    if (e.dir !== 'out') continue;
    try {
      const got = decodeReplies(t.format, bytes.get(e.file));
      if (got.length !== 1 || !isDeepStrictEqual(got[0], e.reply)) {
        log(`WARNING: ${e.file} decodes to ${JSON.stringify(got)}, transcript says ${JSON.stringify(e.reply)}`);
      }
    } catch (err) {
      log(`WARNING: ${e.file} does not decode as ${t.format}: ${err.message}`);
    }
  }

  wss.on('connection', (ws) => {
    const conn = ++conns;
    open++;
    const format = formatOf(ws);
    log(`conn ${conn} opened, subprotocol=${JSON.stringify(ws.protocol)}`);
    if (format !== t.format) return fail(ws, `conn ${conn}: SDK negotiated ${format}, transcript is ${t.format}`);

    const drain = () => {
      while (pos < events.length && events[pos].dir !== 'in' && events[pos].conn === conn) {
        const e = events[pos++];
        if (e.dir === 'out') {
          ws.send(bytes.get(e.file), { binary: format === 'protobuf' });
        } else if (e.dir === 'close') {
          ws.close(e.code, e.reason);
        } else {
          throw new Error(`unknown event ${JSON.stringify(e)}`);
        }
      }
    };
    try {
      drain();
    } catch (err) {
      return fail(ws, err.message);
    }

    ws.on('message', (data, isBinary) => {
      if (finished) return;
      const buf = Buffer.from(data);
      const e = events[pos];
      let cmds;
      try {
        if (isBinary !== (format === 'protobuf')) throw new Error(`${isBinary ? 'binary' : 'text'} frame in ${format} mode`);
        cmds = decodeCommands(format, buf);
      } catch (err) {
        return fail(ws, `REPLAY MISMATCH conn ${conn}: cannot decode frame ${inspect(buf.toString(format === 'json' ? 'utf8' : 'hex'))}: ${err.message}`);
      }
      const got = summary(cmds);
      if (!e || e.dir !== 'in' || e.conn !== conn || !isDeepStrictEqual(got, e.commands)) {
        return fail(ws, `REPLAY MISMATCH conn ${conn}: received ${JSON.stringify(got)} ${inspect(cmds, { depth: 6 })}, ` +
          `expected ${e ? JSON.stringify(e) : 'no more frames'} (event ${pos})`);
      }
      pos++;
      try {
        drain();
      } catch (err) {
        fail(ws, err.message);
      }
    });

    ws.on('close', () => {
      open--;
      if (finished) return;
      if (pos === events.length && open === 0) finish(0, `replay complete: ${events.length} events, ${conns} connections`);
    });
  });

  process.on('SIGTERM', () => finish(pos === events.length ? 0 : 1, `terminated (${progress()})`));
}
