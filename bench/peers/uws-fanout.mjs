// A uWebSockets.js fan-out server, measured side by side with Spindle by `spindle-bench compare`
// (docs/benchmarks.md, "Side by side"). The smallest server that does the same job:
//   WebSocket at /<channel>: the connection is subscribed to <channel>;
//   POST /publish/<channel>: the body goes to every subscriber of <channel> as one text message.
// Backpressure is bounded like Spindle's default client queue (1 MiB per connection).
import uws from '@trufflesuite/uws-js-unofficial';

const app = uws.App();
app.ws('/*', {
  compression: uws.DISABLED,
  maxPayloadLength: 64 * 1024,
  maxBackpressure: 1024 * 1024,
  upgrade: (res, req, context) => {
    res.upgrade({ channel: req.getUrl().slice(1) }, req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context);
  },
  open: (ws) => ws.subscribe(ws.getUserData().channel),
});
app.post('/publish/*', (res, req) => {
  const channel = req.getUrl().slice('/publish/'.length);
  const chunks = [];
  res.onAborted(() => { res.aborted = true; });
  res.onData((chunk, last) => {
    chunks.push(Buffer.from(chunk.slice(0))); // the chunk is only valid during this call
    if (!last) return;
    app.publish(channel, Buffer.concat(chunks), false);
    if (!res.aborted) res.cork(() => res.end('{}'));
  });
});
app.listen('127.0.0.1', Number(process.env.PORT ?? 0), (socket) => {
  if (!socket) {
    console.error('uws-fanout: cannot listen');
    process.exit(1);
  }
  console.log(`uws-fanout: listening on 127.0.0.1:${uws.us_socket_local_port(socket)}`);
});
