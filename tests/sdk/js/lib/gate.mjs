// A WebSocket class for the SDK tests whose connections a test can cut and keep cut.

import WebSocket from 'ws';

// Where a blocked client tries to connect: nothing listens on port 1.
const BLOCKED_URL = 'ws://127.0.0.1:1/connection/websocket';

// A WebSocket class whose connections a test can cut (the TCP connection dropped without a
// close frame, as on a train entering a tunnel) and keep cut until it lets them through again.
export function gate() {
  const g = { open: true, sockets: new Set() };
  g.WebSocket = class GatedWebSocket extends WebSocket {
    constructor(url, protocols, options) {
      super(g.open ? url : BLOCKED_URL, protocols, options);
      g.sockets.add(this);
      this.on('close', () => g.sockets.delete(this));
    }
  };
  g.cut = () => {
    g.open = false;
    for (const socket of g.sockets) socket.terminate();
  };
  return g;
}

