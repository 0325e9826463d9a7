#!/usr/bin/env python3
"""Drives centrifuge-python through the golden flow against server.mjs and asserts every
SDK-visible outcome. Exits 0 on success, 1 with a message on the first mismatch or after a
20 s overall timeout.

    .venv/bin/python drive_py.py --url ws://127.0.0.1:PORT/connection/websocket --format json|protobuf
"""

import argparse
import asyncio
import json
import os
import sys
from importlib.metadata import version as dist_version

from centrifuge import (
    Client,
    ClientEventHandler,
    SubscriptionEventHandler,
    StreamPosition,
)

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "fixture.json"), encoding="utf-8") as f:
    FIX = json.load(f)

SDK_VERSION = dist_version("centrifuge-python")


class Failure(Exception):
    pass


class Driver:
    def __init__(self, url: str, fmt: str):
        self.url = url
        self.fmt = fmt
        self.label = f"py-{fmt}"
        self.step = "start"
        self.failure = None
        self.connecting = []
        self.connected = []
        self.disconnected = []
        self.subscribing = []
        self.subscribed = []
        self.pubs = []
        self.conn_tokens = 0
        self.sub_tokens = 0

    # -- helpers ---------------------------------------------------------------------------

    def fail(self, msg: str):
        # Event handlers run inside the SDK: remember the first failure, the main flow raises it.
        if self.failure is None:
            self.failure = msg
        raise Failure(msg)

    def eq(self, got, want, what):
        if got != want:
            self.fail(f"{what}: got {got!r}, want {want!r}")

    def enc(self, value):
        # JSON codec: JSON values; protobuf: the SDK requires bytes (UTF-8 of the JSON text).
        if self.fmt == "protobuf":
            return json.dumps(value, separators=(",", ":")).encode("utf-8")
        return value

    def dec(self, value):
        if self.fmt != "protobuf" or value is None:
            return value
        if not isinstance(value, bytes):
            self.fail(f"expected bytes in protobuf mode, got {value!r}")
        return json.loads(value.decode("utf-8"))

    def info(self, ci):
        out = {"user": ci.user, "client": ci.client}
        if ci.conn_info is not None:
            out["conn_info"] = self.dec(ci.conn_info)
        if ci.chan_info is not None:
            out["chan_info"] = self.dec(ci.chan_info)
        return out

    def pub_view(self, p):
        out = {"data": self.dec(p.data)}
        if p.info is not None:
            out["info"] = self.info(p.info)
        out["offset"] = p.offset
        if p.tags:
            out["tags"] = dict(p.tags)
        return out

    @staticmethod
    def fix_pub(p):
        # The SDK does not expose a publication's epoch.
        return {k: v for k, v in p.items() if k != "epoch"}

    async def until(self, cond):
        while not cond():
            if self.failure is not None:
                raise Failure(self.failure)
            await asyncio.sleep(0.005)
        if self.failure is not None:
            raise Failure(self.failure)

    # -- flow ------------------------------------------------------------------------------

    async def run(self):
        driver = self

        class ClientEvents(ClientEventHandler):
            async def on_connecting(self, ctx):
                driver.connecting.append(ctx)

            async def on_connected(self, ctx):
                driver.connected.append(ctx)

            async def on_disconnected(self, ctx):
                driver.disconnected.append(ctx)
                if driver.step != "disconnect":
                    driver.failure = driver.failure or f"unexpected disconnected event {ctx!r}"

            async def on_error(self, ctx):
                driver.failure = driver.failure or f"client error event {ctx!r}"

        class SubEvents(SubscriptionEventHandler):
            async def on_subscribing(self, ctx):
                driver.subscribing.append(ctx)

            async def on_subscribed(self, ctx):
                driver.subscribed.append(ctx)

            async def on_unsubscribed(self, ctx):
                driver.failure = driver.failure or f"unexpected unsubscribed event {ctx!r}"

            async def on_publication(self, ctx):
                driver.pubs.append(ctx.pub)

            async def on_error(self, ctx):
                driver.failure = driver.failure or f"subscription error event {ctx!r}"

        async def get_token():
            driver.conn_tokens += 1
            return FIX["tokens"]["conn_refreshed"]

        async def get_sub_token(channel):
            if channel != FIX["channel"]:
                driver.failure = driver.failure or f"sub get_token for channel {channel!r}"
            driver.sub_tokens += 1
            return FIX["tokens"]["sub_refreshed"]

        client = Client(
            self.url,
            events=ClientEvents(),
            token=FIX["tokens"]["conn"],
            get_token=get_token,
            use_protobuf=self.fmt == "protobuf",
            min_reconnect_delay=0.1,
            max_reconnect_delay=0.2,
            proxy=None,
        )

        # 1. connect
        self.step = "connect"
        await client.connect()
        await self.until(lambda: len(self.connected) == 1)
        self.eq(self.connected[0].client, FIX["client_id"], "connected client id")
        self.eq(self.connected[0].version, FIX["server_version"], "connected server version")

        # 2. subscribe with recovery
        self.step = "subscribe"
        sub = client.new_subscription(
            FIX["channel"],
            events=SubEvents(),
            token=FIX["tokens"]["sub"],
            get_token=get_sub_token,
            recoverable=True,
            positioned=True,
        )
        await sub.subscribe()
        await self.until(lambda: len(self.subscribed) == 1)
        s = self.subscribed[0]
        self.eq(
            [s.channel, s.recoverable, s.positioned, s.was_recovering, s.recovered],
            [FIX["channel"], True, True, False, False],
            "subscribed [channel, recoverable, positioned, was_recovering, recovered]",
        )
        self.eq(s.stream_position, StreamPosition(offset=0, epoch=FIX["epoch"]), "subscribed stream position")

        # 3. two live publications
        self.step = "live publications"
        await self.until(lambda: len(self.pubs) >= 2)
        self.eq(
            [self.pub_view(p) for p in self.pubs],
            [self.fix_pub(p) for p in FIX["publications"][:2]],
            "live publications",
        )

        # 4. publish
        self.step = "publish"
        await sub.publish(self.enc(FIX["publish_data"]))

        # 5. history: limit, then limit + since
        self.step = "history"
        h = await sub.history(limit=FIX["history_limit"])
        self.eq([h.offset, h.epoch], [2, FIX["epoch"]], "history position")
        self.eq(
            [self.pub_view(p) for p in h.publications],
            [self.fix_pub(p) for p in FIX["publications"][:2]],
            "history publications",
        )
        self.step = "history since"
        since = FIX["history_since_offset"]
        h = await sub.history(limit=FIX["history_limit"], since=StreamPosition(offset=since, epoch=FIX["epoch"]))
        self.eq([h.offset, h.epoch], [2, FIX["epoch"]], "history(since) position")
        self.eq(
            [self.pub_view(p) for p in h.publications],
            [self.fix_pub(p) for p in FIX["publications"][since:2]],
            "history(since) publications",
        )

        # 6. presence
        self.step = "presence"
        p = await sub.presence()
        self.eq({k: self.info(v) for k, v in p.clients.items()}, FIX["presence"], "presence clients")

        # 7. presence stats
        self.step = "presence_stats"
        ps = await sub.presence_stats()
        self.eq({"num_clients": ps.num_clients, "num_users": ps.num_users}, FIX["presence_stats"], "presence stats")

        # 8. rpc
        self.step = "rpc"
        r = await client.rpc(FIX["rpc"]["method"], self.enc(FIX["rpc"]["data"]))
        self.eq(self.dec(r.data), FIX["rpc"]["result"], "rpc result data")

        # 9. token refreshes (the server replied ttl 2 to connect and subscribe)
        self.step = "refresh + sub_refresh"
        await self.until(lambda: self.conn_tokens >= 1 and self.sub_tokens >= 1)

        # 10-11. the server pings once both refreshes are answered, and closes with 3001 after
        # the pong: the SDK reconnects and resubscribes with recovery.
        self.step = "ping/pong + shutdown + reconnect"
        await self.until(lambda: len(self.connected) == 2)
        self.eq(
            [(c.code, c.reason) for c in self.connecting if c.code == 3001],
            [(3001, "shutdown")],
            "connecting event for the 3001 close",
        )
        self.eq(self.connected[1].client, FIX["client_id"], "reconnected client id")

        self.step = "recovery"
        await self.until(lambda: len(self.subscribed) == 2 and len(self.pubs) >= 4)
        s = self.subscribed[1]
        self.eq(
            [s.recoverable, s.positioned, s.was_recovering, s.recovered],
            [True, True, True, True],
            "resubscribed [recoverable, positioned, was_recovering, recovered]",
        )
        self.eq(s.stream_position, StreamPosition(offset=2, epoch=FIX["epoch"]), "resubscribed stream position")
        self.eq(
            [self.pub_view(p) for p in self.pubs[2:]],
            [self.fix_pub(p) for p in FIX["publications"][2:4]],
            "recovered publications",
        )
        self.eq([self.conn_tokens, self.sub_tokens], [1, 1], "get_token calls [connection, subscription]")

        # 12. done
        self.step = "disconnect"
        await asyncio.sleep(0.05)  # nothing else may arrive
        self.eq(len(self.pubs), 4, "publication count")
        await client.disconnect()
        await self.until(lambda: len(self.disconnected) == 1)


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--format", choices=["json", "protobuf"], default="json")
    a = ap.parse_args()
    d = Driver(a.url, a.format)
    try:
        await asyncio.wait_for(d.run(), timeout=20)
    except asyncio.TimeoutError:
        msg = d.failure or "overall timeout of 20 s"
        print(f"FAIL {d.label} (centrifuge-python {SDK_VERSION}) at step \"{d.step}\": {msg}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - any exception is a failed run
        msg = d.failure or f"{type(e).__name__}: {e}"
        print(f"FAIL {d.label} (centrifuge-python {SDK_VERSION}) at step \"{d.step}\": {msg}", file=sys.stderr)
        return 1
    print(
        f"OK {d.label} (centrifuge-python {SDK_VERSION}): connected x2, 4 publications, publish, history x2, "
        "presence, presence_stats, rpc, refresh, sub_refresh, pong, recovery"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
