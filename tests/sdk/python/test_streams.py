"""centrifuge-python against a real spindle binary: recovery after missed publications, cache
mode, presence, join/leave, fossil delta and tags filters, in JSON and in Protobuf.
Namespaces: tests/fixtures/spindle.json (rec, shortrec, cache, room, delta, tags).

    cd tests/sdk/python && .venv/bin/python -m pytest test_streams.py     (or ../run.sh)
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from cent import PublishRequest
from centrifuge import Client, ClientState, DeltaType, Filter

from spindle_harness import API_KEY, Server, unique
from test_sdk import QUIET, SubRecorder, World, cent_call, run, wait_for

# Where a blocked client tries to connect: nothing listens on port 1.
BLOCKED_URL = "ws://127.0.0.1:1/connection/websocket"


class StreamRecorder(SubRecorder):
    """Also records join and leave."""

    async def on_join(self, ctx):
        self.events["join"].append(ctx)

    async def on_leave(self, ctx):
        self.events["leave"].append(ctx)


async def subscribed(client: Client, channel: str, **options: Any):
    rec = StreamRecorder()
    sub = client.new_subscription(channel, events=rec, **options)
    await sub.subscribe()
    await wait_for(
        lambda: rec.count("subscribed") or rec.count("unsubscribed"),
        f"subscribed to {channel}",
        rec=rec,
    )
    assert rec.count("subscribed") == 1, f"{channel}: {dict(rec.events)!r}"
    return sub, rec


async def publish(server: Server, channel: str, data: Any, **extra: Any) -> None:
    await cent_call(server, "publish", PublishRequest(channel=channel, data=data, **extra))


def api_publish_raw(server: Server, body: dict) -> dict:
    """POST /api/publish with fields cent does not know (``delta``)."""
    request = urllib.request.Request(
        f"{server.api_url}/publish",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": API_KEY},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - 127.0.0.1 only
        reply = json.loads(response.read())
    assert "error" not in reply, reply
    return reply


async def miss_and_reconnect(w: World, server: Server, channel: str, missed: int):
    """Subscribes, receives publication 1, loses the TCP connection while ``missed`` more are
    published (reconnects blocked meanwhile), then lets the client reconnect."""
    client, crec, _ = await w.connected(server, "traveller")
    _, rec = await subscribed(client, channel)
    await publish(server, channel, {"n": 1})
    await wait_for(lambda: rec.count("publication") >= 1, "publication 1", rec=rec)

    address = client._address
    client._address = BLOCKED_URL
    client._conn.transport.abort()
    await wait_for(lambda: client.state == ClientState.CONNECTING, "the client to notice", rec=crec)
    for n in range(2, missed + 2):
        await publish(server, channel, {"n": n})
    client._address = address
    await wait_for(lambda: rec.count("subscribed") >= 2, "the resubscribe", timeout=15, rec=rec)
    return client, rec


def test_recovers_50_missed_publications_in_order(fmt, spindle):
    server = spindle()

    async def scenario():
        async with World(fmt) as w:
            channel = unique("rec:train")
            _, rec = await miss_and_reconnect(w, server, channel, 50)
            ctx = rec.events["subscribed"][1]
            assert (ctx.was_recovering, ctx.recovered) == (True, True), ctx
            await wait_for(lambda: rec.count("publication") >= 51, "51 publications", rec=rec)
            await asyncio.sleep(QUIET)
            pubs = [e.pub for e in rec.events["publication"]]
            assert [w.dec(p.data)["n"] for p in pubs] == list(range(1, 52))
            assert [p.offset for p in pubs] == list(range(1, 52))

    run(scenario())


def test_a_gap_longer_than_history_is_not_recovered(fmt, spindle):
    server = spindle()

    async def scenario():
        async with World(fmt) as w:
            channel = unique("shortrec:train")
            _, rec = await miss_and_reconnect(w, server, channel, 50)
            ctx = rec.events["subscribed"][1]
            assert (ctx.was_recovering, ctx.recovered) == (True, False), ctx
            await asyncio.sleep(QUIET)
            assert rec.count("publication") == 1, "nothing recovered"

    run(scenario())


def test_cache_mode_recovers_the_latest_publication(fmt, spindle):
    server = spindle()

    async def scenario():
        async with World(fmt) as w:
            channel = unique("cache:state")
            _, rec = await miss_and_reconnect(w, server, channel, 5)
            ctx = rec.events["subscribed"][1]
            assert (ctx.was_recovering, ctx.recovered) == (True, True), ctx
            await wait_for(lambda: rec.count("publication") >= 2, "the latest", rec=rec)
            await asyncio.sleep(QUIET)
            assert [w.dec(e.pub.data)["n"] for e in rec.events["publication"]] == [1, 6]

    run(scenario())


def test_presence_and_join_leave(fmt, spindle):
    server = spindle()

    async def scenario():
        async with World(fmt) as w:
            channel = unique("room:lobby")
            alice, _, alice_id = await w.connected(server, "alice")
            a_sub, a_rec = await subscribed(alice, channel, join_leave=True)
            bob, _, bob_id = await w.connected(server, "bob")
            b_sub, b_rec = await subscribed(bob, channel)

            def bob_joined() -> bool:
                return any(e.info.user == "bob" for e in a_rec.events["join"])

            await wait_for(bob_joined, "bob's join", rec=a_rec)
            presence = await a_sub.presence()
            assert sorted(presence.clients) == sorted([alice_id, bob_id])
            assert sorted(i.user for i in presence.clients.values()) == ["alice", "bob"]
            stats = await b_sub.presence_stats()
            assert (stats.num_clients, stats.num_users) == (2, 2)

            await b_sub.unsubscribe()
            await wait_for(lambda: a_rec.count("leave") >= 1, "bob's leave", rec=a_rec)
            assert a_rec.events["leave"][0].info.client == bob_id
            assert b_rec.count("join") == 0, "bob did not ask for join/leave"

    run(scenario())


def test_delta_publications_decode_to_the_originals(fmt, spindle):
    server = spindle()

    async def scenario():
        async with World(fmt) as w:
            channel = unique("delta:quotes")
            client, _, _ = await w.connected(server, "trader")
            _, rec = await subscribed(client, channel, delta=DeltaType.FOSSIL)
            payloads = [
                {
                    "ticker": "AAPL",
                    "exchange": "NASDAQ",
                    "note": "a payload long enough to make deltas pay, é ✓",
                    "price": f"{187 + i / 7:.4f}",
                    "seq": i,
                }
                for i in range(5)
            ]
            for data in payloads:
                await asyncio.to_thread(
                    api_publish_raw, server, {"channel": channel, "data": data, "delta": True}
                )
            await wait_for(lambda: rec.count("publication") >= 5, "the publications", rec=rec)
            pubs = [e.pub for e in rec.events["publication"]]
            assert [w.dec(p.data) for p in pubs] == payloads
            assert [p.delta for p in pubs] == [False, True, True, True, True]

    run(scenario())


def test_tags_filter_delivers_matching_publications_only(fmt, spindle):
    server = spindle()

    async def scenario():
        async with World(fmt) as w:
            channel = unique("tags:ticks")
            client, _, _ = await w.connected(server, "filtered")
            tags_filter = Filter.all(
                Filter.is_in("ticker", ["AAPL", "MSFT"]),
                Filter.gte("price", "100"),
            )
            _, rec = await subscribed(client, channel, tags_filter=tags_filter)
            ticks = [("AAPL", "187.5"), ("GOOG", "150"), ("MSFT", "99.9"), ("MSFT", "410")]
            for i, (ticker, price) in enumerate(ticks):
                await publish(server, channel, {"i": i}, tags={"ticker": ticker, "price": price})
            await wait_for(lambda: rec.count("publication") >= 2, "the matches", rec=rec)
            await asyncio.sleep(QUIET)
            assert [w.dec(e.pub.data)["i"] for e in rec.events["publication"]] == [0, 3]
            assert rec.count("unsubscribed") == 0, "skipped offsets are no gap"

    run(scenario())


