"""centrifuge-python (and cent, the server API client) against a real spindle binary, in JSON and
in Protobuf. Every test starts its own server (tests/fixtures/spindle.json) on a free port.

    cd tests/sdk/python && .venv/bin/python -m pytest     (or ../run.sh)
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any, Awaitable, Callable, Optional

import pytest
from cent import Client as CentClient
from cent import ChannelsRequest, DisconnectRequest, PublishRequest, UnsubscribeRequest
from centrifuge import (
    Client,
    ClientEventHandler,
    ClientState,
    ReplyError,
    SubscriptionEventHandler,
    SubscriptionState,
)

from spindle_harness import (
    API_KEY,
    Server,
    badly_signed_token,
    expired_token,
    free_port,
    token,
    unique,
)

TEST_TIMEOUT = 45.0
WAIT = 5.0
QUIET = 0.3


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


async def wait_for(cond: Callable[[], bool], what: str, timeout: float = WAIT, rec=None) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            seen = f"\nrecorded events: {dict(rec.events)!r}" if rec is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{seen}")
        await asyncio.sleep(0.01)


class ClientRecorder(ClientEventHandler):
    """Records every client event (server-side subscription events included) by name."""

    def __init__(self) -> None:
        self.events: dict[str, list] = defaultdict(list)

    def count(self, name: str) -> int:
        return len(self.events[name])

    async def on_connecting(self, ctx):
        self.events["connecting"].append(ctx)

    async def on_connected(self, ctx):
        self.events["connected"].append(ctx)

    async def on_disconnected(self, ctx):
        self.events["disconnected"].append(ctx)

    async def on_error(self, ctx):
        self.events["error"].append(ctx)

    async def on_subscribed(self, ctx):
        self.events["subscribed"].append(ctx)

    async def on_subscribing(self, ctx):
        self.events["subscribing"].append(ctx)

    async def on_unsubscribed(self, ctx):
        self.events["unsubscribed"].append(ctx)

    async def on_publication(self, ctx):
        self.events["publication"].append(ctx)


class SubRecorder(SubscriptionEventHandler):
    """Records every subscription event by name."""

    def __init__(self) -> None:
        self.events: dict[str, list] = defaultdict(list)

    def count(self, name: str) -> int:
        return len(self.events[name])

    async def on_subscribing(self, ctx):
        self.events["subscribing"].append(ctx)

    async def on_subscribed(self, ctx):
        self.events["subscribed"].append(ctx)

    async def on_unsubscribed(self, ctx):
        self.events["unsubscribed"].append(ctx)

    async def on_publication(self, ctx):
        self.events["publication"].append(ctx)

    async def on_error(self, ctx):
        self.events["error"].append(ctx)


class World:
    """One test's clients and payload codec for an encoding; disconnects the clients at exit."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.clients: list[Client] = []

    async def __aenter__(self) -> "World":
        return self

    async def __aexit__(self, *exc) -> None:
        for client in self.clients:
            try:
                await asyncio.wait_for(client.disconnect(), 2)
            except Exception:  # noqa: BLE001 - cleanup only
                pass

    # JSON codec: payloads are JSON values; protobuf: bytes holding the JSON text.
    def enc(self, value: Any) -> Any:
        if self.fmt == "protobuf":
            return json.dumps(value, separators=(",", ":")).encode("utf-8")
        return value

    def dec(self, value: Any) -> Any:
        if self.fmt != "protobuf":
            return value
        assert isinstance(value, bytes), f"protobuf payloads are bytes, got {value!r}"
        return json.loads(value.decode("utf-8"))

    def client(
        self,
        server: Server,
        token: str = "",
        get_token: Optional[Callable[[], Awaitable[str]]] = None,
    ) -> tuple[Client, ClientRecorder]:
        rec = ClientRecorder()
        client = Client(
            server.url,
            events=rec,
            token=token,
            get_token=get_token,
            use_protobuf=self.fmt == "protobuf",
            min_reconnect_delay=0.1,
            max_reconnect_delay=0.5,
            proxy=None,  # never an environment proxy for 127.0.0.1
        )
        self.clients.append(client)
        return client, rec

    async def connected(self, server: Server, user: str, **claims: Any):
        client, rec = self.client(server, token=token(user, **claims))
        await client.connect()
        await wait_for(
            lambda: rec.count("connected") or rec.count("disconnected"),
            f"{user} to connect",
            rec=rec,
        )
        assert rec.count("connected") == 1, f"{user}: {dict(rec.events)!r}"
        return client, rec, rec.events["connected"][0].client

    async def subscribed(self, client: Client, channel: str):
        rec = SubRecorder()
        sub = client.new_subscription(channel, events=rec)
        await sub.subscribe()
        await wait_for(
            lambda: rec.count("subscribed") or rec.count("unsubscribed"),
            f"subscribed to {channel}",
            rec=rec,
        )
        assert sub.state == SubscriptionState.SUBSCRIBED, f"{channel}: {dict(rec.events)!r}"
        return sub, rec


def cent_for(server: Server) -> CentClient:
    return CentClient(server.api_url, API_KEY, timeout=5)


async def cent_call(server: Server, method: str, request) -> Any:
    """Runs a (blocking, requests-based) cent call off the event loop."""
    client = cent_for(server)
    return await asyncio.to_thread(getattr(client, method), request)


# --- scenarios ---------------------------------------------------------------------------------


def test_connects_with_a_token(fmt, spindle):
    server = spindle()

    async def scenario():
        async with World(fmt) as w:
            client, rec, client_id = await w.connected(server, "alice")
            assert client.state == ClientState.CONNECTED
            assert client_id, "client id in the connected event"
            assert rec.events["connected"][0].version, "server version in the connected event"
            assert rec.count("error") == 0, rec.events["error"]

    run(scenario())


def test_receives_a_publication_sent_by_cent_once(fmt, spindle):
    server = spindle()

    async def scenario():
        async with World(fmt) as w:
            client, _, _ = await w.connected(server, "alice")
            channel = unique("chat:room")
            _, rec = await w.subscribed(client, channel)
            data = {"text": "hello", "n": 1}
            await cent_call(server, "publish", PublishRequest(channel=channel, data=data))
            await wait_for(lambda: rec.count("publication") >= 1, "the publication", rec=rec)
            pub = rec.events["publication"][0].pub
            assert w.dec(pub.data) == data
            assert pub.info is None, "API publications carry no publisher info"
            await asyncio.sleep(QUIET)
            assert rec.count("publication") == 1, "received exactly once"

    run(scenario())


def test_client_publish_reaches_another_subscriber_with_info(fmt, spindle):
    server = spindle()

    async def scenario():
        async with World(fmt) as w:
            channel = unique("chat:room")
            alice, _, _ = await w.connected(server, "alice")
            bob, _, bob_id = await w.connected(server, "bob")
            _, a_rec = await w.subscribed(alice, channel)
            b_sub, b_rec = await w.subscribed(bob, channel)
            data = {"from": "bob"}
            await b_sub.publish(w.enc(data))
            for name, rec in (("alice", a_rec), ("bob", b_rec)):
                await wait_for(lambda: rec.count("publication") >= 1, f"{name}'s publication", rec=rec)
                pub = rec.events["publication"][0].pub
                assert w.dec(pub.data) == data, name
                assert pub.info is not None, f"{name}: publication info"
                assert (pub.info.user, pub.info.client) == ("bob", bob_id), name
            await asyncio.sleep(QUIET)
            assert (a_rec.count("publication"), b_rec.count("publication")) == (1, 1)

    run(scenario())


def test_unsubscribe_stops_delivery(fmt, spindle):
    server = spindle()

    async def scenario():
        async with World(fmt) as w:
            client, _, _ = await w.connected(server, "carol")
            gone_channel, kept_channel = unique("chat:gone"), unique("chat:kept")
            gone, gone_rec = await w.subscribed(client, gone_channel)
            _, kept_rec = await w.subscribed(client, kept_channel)
            await gone.unsubscribe()
            await wait_for(lambda: gone_rec.count("unsubscribed") >= 1, "unsubscribed", rec=gone_rec)
            assert gone.state == SubscriptionState.UNSUBSCRIBED
            assert gone_rec.events["unsubscribed"][0].code == 0, "code 0 = unsubscribe called"
            await asyncio.sleep(0.2)  # let the unsubscribe command reach the server
            await cent_call(server, "publish", PublishRequest(channel=gone_channel, data={"n": 1}))
            await cent_call(server, "publish", PublishRequest(channel=kept_channel, data={"n": 2}))
            await wait_for(lambda: kept_rec.count("publication") >= 1, "kept publication", rec=kept_rec)
            await asyncio.sleep(QUIET)
            assert gone_rec.count("publication") == 0, "nothing after unsubscribe"

    run(scenario())


def test_server_side_subscription_from_token_channels(fmt, spindle):
    server = spindle()

    async def scenario():
        async with World(fmt) as w:
            channel = unique("chat:server-side")
            client, rec = w.client(server, token=token("dan", channels=[channel]))
            await client.connect()
            await wait_for(lambda: rec.count("subscribed") >= 1, "server-side subscribed", rec=rec)
            assert rec.events["subscribed"][0].channel == channel
            data = {"server": "side"}
            await cent_call(server, "publish", PublishRequest(channel=channel, data=data))
            await wait_for(lambda: rec.count("publication") >= 1, "server-side publication", rec=rec)
            ctx = rec.events["publication"][0]
            assert ctx.channel == channel
            assert w.dec(ctx.pub.data) == data

    run(scenario())


def test_permission_denied_103(fmt, spindle):
    server = spindle()

    async def scenario():
        async with World(fmt) as w:
            client, _, _ = await w.connected(server, "eve")
            channel = unique("secret:vault")
            rec = SubRecorder()
            sub = client.new_subscription(channel, events=rec)
            await sub.subscribe()
            await wait_for(lambda: rec.count("unsubscribed") >= 1, "unsubscribed after 103", rec=rec)
            assert rec.events["unsubscribed"][0].code == 103, rec.events["unsubscribed"]
            assert sub.state == SubscriptionState.UNSUBSCRIBED
            with pytest.raises(ReplyError) as err:
                await client.publish(channel, w.enc({"x": 1}))
            assert err.value.code == 103
            assert client.state == ClientState.CONNECTED

    run(scenario())


def test_invalid_token_closes_3500_without_reconnect(fmt, spindle):
    server = spindle()

    async def scenario():
        async with World(fmt) as w:
            client, rec = w.client(server, token=badly_signed_token("mallory"))
            await client.connect()
            await wait_for(lambda: rec.count("disconnected") >= 1, "disconnected", rec=rec)
            ctx = rec.events["disconnected"][0]
            assert ctx.code == 3500, ctx
            assert client.state == ClientState.DISCONNECTED
            connecting = rec.count("connecting")
            await asyncio.sleep(0.8)
            assert client.state == ClientState.DISCONNECTED, "stays disconnected"
            assert rec.count("connecting") == connecting, "no reconnect attempt"
            assert rec.count("connected") == 0

    run(scenario())


def test_expired_token_109_calls_get_token_and_reconnects(fmt, spindle):
    server = spindle()

    async def scenario():
        calls = 0

        async def get_token() -> str:
            nonlocal calls
            calls += 1
            return token("late")

        async with World(fmt) as w:
            client, rec = w.client(server, token=expired_token("late"), get_token=get_token)
            await client.connect()
            await wait_for(lambda: rec.count("connected") >= 1, "connected with the new token", rec=rec)
            assert calls == 1, "get_token calls"
            codes = [getattr(e.error, "code", None) for e in rec.events["error"]]
            assert 109 in codes, f"an error event carrying code 109: {rec.events['error']!r}"
            assert client.state == ClientState.CONNECTED

    run(scenario())


def test_api_disconnect_3503(fmt, spindle):
    server = spindle()

    async def scenario():
        async with World(fmt) as w:
            client, rec, _ = await w.connected(server, "dave")
            await cent_call(server, "disconnect", DisconnectRequest(user="dave"))
            await wait_for(lambda: rec.count("disconnected") >= 1, "disconnected", rec=rec)
            ctx = rec.events["disconnected"][0]
            assert ctx.code == 3503, ctx
            assert client.state == ClientState.DISCONNECTED

    run(scenario())


def test_api_unsubscribe_2000(fmt, spindle):
    server = spindle()

    async def scenario():
        async with World(fmt) as w:
            client, _, _ = await w.connected(server, "frank")
            channel = unique("chat:kicked")
            sub, rec = await w.subscribed(client, channel)
            await cent_call(server, "unsubscribe", UnsubscribeRequest(user="frank", channel=channel))
            await wait_for(lambda: rec.count("unsubscribed") >= 1, "unsubscribed", rec=rec)
            ctx = rec.events["unsubscribed"][0]
            assert ctx.code == 2000, ctx
            assert sub.state == SubscriptionState.UNSUBSCRIBED
            assert client.state == ClientState.CONNECTED

    run(scenario())


def test_reconnects_after_server_restart_on_same_port(fmt, spindle):
    port = free_port()
    first = spindle(port=port)

    async def scenario():
        async with World(fmt) as w:
            client, rec, _ = await w.connected(first, "gina")
            channel = unique("chat:restart")
            _, sub_rec = await w.subscribed(client, channel)
            code = await asyncio.to_thread(first.stop)
            assert code == 0, f"exit code after SIGTERM: {code}"
            await wait_for(
                lambda: any(c.code == 3001 for c in rec.events["connecting"]),
                "connecting event with code 3001",
                rec=rec,
            )
            second = await asyncio.to_thread(spindle, None, port)
            await wait_for(lambda: rec.count("connected") >= 2, "reconnect", timeout=10, rec=rec)
            await wait_for(lambda: sub_rec.count("subscribed") >= 2, "resubscribe", rec=sub_rec)
            data = {"after": "restart"}
            await cent_call(second, "publish", PublishRequest(channel=channel, data=data))
            await wait_for(lambda: sub_rec.count("publication") >= 1, "publication", rec=sub_rec)
            assert w.dec(sub_rec.events["publication"][0].pub.data) == data
            assert rec.count("disconnected") == 0, "never disconnected for good"

    run(scenario())


def test_cent_channels_with_and_without_active_channels(fmt, spindle):
    """cent decodes `channels` when no channel is active too (issue 13: Spindle answered
    ``{"result":{}}`` and cent raised CentDecodeError)."""
    server = spindle()

    async def scenario():
        empty = await cent_call(server, "channels", ChannelsRequest())
        assert empty.channels == {}
        async with World(fmt) as w:
            channel = unique("chat:active")
            client, _, _ = await w.connected(server, "alice")
            await w.subscribed(client, channel)
            active = await cent_call(server, "channels", ChannelsRequest(pattern="chat:*"))
            assert active.channels[channel].num_clients == 1

    run(scenario())
