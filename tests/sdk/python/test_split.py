"""centrifuge-python and cent on the split shape (issue 14): ``spindle core`` + two ``spindle
edge``s joined by QUIC; clients on different edges, the backend publishing through cent on the
core. JSON and Protobuf.

    cd tests/sdk/python && .venv/bin/python -m pytest test_split.py
"""

from __future__ import annotations

import asyncio
import shutil

import pytest
from cent import PublishRequest

from spindle_harness import start_split, unique
from test_sdk import QUIET, World, cent_call, run, wait_for


@pytest.fixture
def split():
    core, edges, certs = start_split(edges=2)
    yield core, edges
    for server in [*edges, core]:
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - cleanup must not mask the test's own failure
            server.kill()
    shutil.rmtree(certs, ignore_errors=True)


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
