// Waiting helpers shared by the SDK tests: `record` keeps every event an SDK emitter fires,
// `waitFor` polls a condition until it holds and, on timeout, shows what was recorded.

import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';

// Polls `cond` until true; throws with `what` (and the events of `rec`, if given) after `ms`.
export async function waitFor(cond, what, ms = 5000, rec = null) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) {
      const seen = rec ? `\nrecorded events: ${inspect(rec.events, { depth: 5 })}` : '';
      throw new Error(`timed out after ${ms} ms waiting for ${what}${seen}`);
    }
    await sleep(10);
  }
}

// Records every event of `emitter` named in `names` (recording 'error' also keeps an SDK's
// unhandled error event from throwing).
export function record(emitter, names) {
  const rec = { events: {} };
  for (const name of names) {
    rec.events[name] = [];
    emitter.on(name, (ctx) => rec.events[name].push(ctx));
  }
  rec.count = (name) => rec.events[name].length;
  rec.last = (name) => rec.events[name][rec.events[name].length - 1];
  return rec;
}
