"""centrifuge-python and cent on the split shape (issue 14): ``spindle core`` + two ``spindle
edge``s joined by QUIC; clients on different edges, the backend publishing through cent on the
core. JSON and Protobuf. And continuity (issue 15): a core killed under two edges, the clients
seeing nothing of it.

    cd tests/sdk/python && .venv/bin/python -m pytest test_split.py
"""

from __future__ import annotations

import asyncio
import shutil

import pytest
from cent import PublishRequest

from spindle_harness import start_split, stop_all, unique
from test_sdk import QUIET, World, cent_call, run, wait_for


def stop_split(servers, certs: str) -> None:
    try:
        stop_all(servers)
    finally:
        shutil.rmtree(certs, ignore_errors=True)


@pytest.fixture
def split():
    cores, edges, certs = start_split(edges=2)
    yield cores[0], edges
    stop_split([*edges, *cores], certs)


def test_clients_on_two_edges_publish_to_each_other_and_get_cent_publications(fmt, split):
    core, edges = split

    async def scenario():
        async with World(fmt) as w:
            channel = unique("chat:split")
            alice, _, _ = await w.connected(edges[0], "alice")
            bob, _, _ = await w.connected(edges[1], "bob")
            alice_sub, a = await w.subscribed(alice, channel)
            _, b = await w.subscribed(bob, channel)

            await cent_call(core, "publish", PublishRequest(channel=channel, data={"n": 1}))
            for name, rec in (("alice", a), ("bob", b)):
                await wait_for(lambda rec=rec: rec.count("publication") >= 1, f"{name}: cent's publication", rec=rec)
                assert w.dec(rec.events["publication"][0].pub.data) == {"n": 1}

            await alice_sub.publish(w.enc({"from": "alice"}))
            await wait_for(lambda: b.count("publication") >= 2, "bob: alice's publication", rec=b)
            publication = b.events["publication"][1].pub
            assert w.dec(publication.data) == {"from": "alice"}
            assert publication.info.user == "alice"

            await asyncio.sleep(QUIET)
            assert a.count("publication") == 2 and b.count("publication") == 2, "each once"

    run(scenario())


def test_a_killed_core_is_invisible_to_clients_on_two_edges(fmt):
    """Two cores on one Redis, two edges knowing both; core1 is killed (SIGKILL) a third of the
    way through the publications, which go on through core2: no disconnect, no resubscribe,
    every publication once and in order at every client."""
    patch = {
        "engine": {
            "type": "redis",
            "redis": {"address": "redis://127.0.0.1:6379", "prefix": unique("spindle-py-failover")},
        }
    }
    cores, edges, certs = start_split(edges=2, cores=2, patch=patch)
    total = 90

    async def scenario():
        async with World(fmt) as w:
            channel = unique("rec:failover")
            watched = []
            for i, edge in enumerate(edges):
                client, conn, _ = await w.connected(edge, f"reader{i}")
                _, rec = await w.subscribed(client, channel)
                watched.append((conn, rec))
            for n in range(1, total + 1):
                if n == 30:
                    cores[0].kill()
                await cent_call(cores[1], "publish", PublishRequest(channel=channel, data={"n": n}))
                await asyncio.sleep(0.025)
            for i, (conn, rec) in enumerate(watched):
                await wait_for(
                    lambda rec=rec: rec.count("publication") >= total,
                    f"reader{i}: every publication",
                    timeout=10,
                    rec=rec,
                )
                publications = [ctx.pub for ctx in rec.events["publication"]]
                assert [w.dec(p.data)["n"] for p in publications] == list(range(1, total + 1))
                assert [p.offset for p in publications] == list(range(1, total + 1))
                assert conn.count("disconnected") == 0, f"reader{i}: {dict(conn.events)!r}"
                assert conn.count("connecting") == 1, f"reader{i} reconnected: {dict(conn.events)!r}"
                assert rec.count("unsubscribed") == 0, f"reader{i}: {dict(rec.events)!r}"
                assert rec.count("subscribed") == 1, f"reader{i} resubscribed"
            await asyncio.sleep(QUIET)
            for _, rec in watched:
                assert rec.count("publication") == total, "each once"

    try:
        run(scenario())
    finally:
        stop_split([*edges, *cores], certs)
