"""centrifuge-python against a real spindle binary: the token refresh cycle driven by the SDK's
``get_token`` callbacks, for the connection (``refresh``) and for a subscription
(``sub_refresh``), across several expiries, in JSON and in Protobuf.

Tokens live ~2 s and the server's grace periods after an expiry (``client.expired_close_delay``
/ ``expired_sub_close_delay``, 25 s by default) are cut to 3 s, so a refresh the server accepted
but did not act on (an expiry deadline left where it was) would end the connection with 3005, or
the subscription with 2501, inside the observation window.

    cd tests/sdk/python && .venv/bin/python -m pytest test_token_refresh.py     (or ../run.sh)
"""

from __future__ import annotations

import asyncio
import time

from cent import PublishRequest
from centrifuge import ClientState, SubscriptionState

from spindle_harness import expired_token, sign, token, unique
from test_sdk import SubRecorder, World, cent_call, run, wait_for

# Every token handed out lives this long; the server's ttl (and the SDK's refresh timer) is 1-2 s.
TOKEN_LIFE = 2
# How long a client is watched after connecting / subscribing: past the first expiry plus the
# cut grace period (at most 2 + 3 s), so a refresh without effect shows up as a 3005 or a 2501.
WATCH = 6.5
PATCH = {"client": {"expired_close_delay": "3s", "expired_sub_close_delay": "3s"}}


def short_token(user: str) -> str:
    now = int(time.time())
    return sign({"sub": user, "iat": now, "exp": now + TOKEN_LIFE})


def short_sub_token(user: str, channel: str) -> str:
    now = int(time.time())
    return sign({"sub": user, "channel": channel, "iat": now, "exp": now + TOKEN_LIFE})


def test_connection_get_token_refreshes_across_expiries(fmt, spindle):
    server = spindle(patch=PATCH)
    user = "refresher"

    async def scenario():
        calls = 0

        async def get_token() -> str:
            nonlocal calls
            calls += 1
            return short_token(user)

        async with World(fmt) as w:
            client, rec = w.client(server, token=short_token(user), get_token=get_token)
            await client.connect()
            await wait_for(
                lambda: rec.count("connected") or rec.count("disconnected"), "connect", rec=rec
            )
            assert rec.count("connected") == 1, dict(rec.events)
            client_id = rec.events["connected"][0].client
            loop = asyncio.get_running_loop()
            started = loop.time()
            channel = unique("chat:refresh")
            sub_rec = SubRecorder()
            sub = client.new_subscription(channel, events=sub_rec)
            await sub.subscribe()
            await wait_for(lambda: sub_rec.count("subscribed") >= 1, "subscribed", rec=sub_rec)

            # The SDK refreshes when the server's ttl runs out: 1-2 s per token.
            await wait_for(lambda: calls >= 2, "two get_token calls", timeout=WATCH, rec=rec)
            data = {"after": "second refresh"}
            await cent_call(server, "publish", PublishRequest(channel=channel, data=data))
            await wait_for(
                lambda: sub_rec.count("publication") >= 1, "publication after refreshes", rec=sub_rec
            )
            assert w.dec(sub_rec.events["publication"][0].pub.data) == data

            await asyncio.sleep(max(0.0, WATCH - (loop.time() - started)))
            assert calls >= 2, f"get_token calls: {calls}"
            assert client.state == ClientState.CONNECTED
            assert rec.count("disconnected") == 0, rec.events["disconnected"]
            assert rec.count("connecting") == 1, f"only the initial one: {rec.events['connecting']!r}"
            assert rec.count("connected") == 1, "never reconnected"
            assert rec.events["connected"][0].client == client_id
            assert rec.count("error") == 0, rec.events["error"]
            assert sub_rec.count("subscribed") == 1, "never resubscribed"

    run(scenario())


def test_subscription_get_token_refreshes_across_expiries(fmt, spindle):
    server = spindle(patch=PATCH)
    user = "subrefresher"
    # `secret` has no allow_subscribe_for_client: only a subscription token lets a client in
    # (103 without one, see test_sdk.py test_permission_denied_103).
    channel = unique("secret:refresh")

    async def scenario():
        calls = 0

        async def get_token(ch: str) -> str:
            nonlocal calls
            assert ch == channel
            calls += 1
            return short_sub_token(user, channel)

        async with World(fmt) as w:
            client, rec, client_id = await w.connected(server, user)
            sub_rec = SubRecorder()
            # The first token is given up front, so every get_token call is a sub_refresh.
            sub = client.new_subscription(
                channel, events=sub_rec, token=short_sub_token(user, channel), get_token=get_token
            )
            await sub.subscribe()
            await wait_for(
                lambda: sub_rec.count("subscribed") or sub_rec.count("unsubscribed"),
                f"subscribed to {channel}",
                rec=sub_rec,
            )
            assert sub.state == SubscriptionState.SUBSCRIBED, dict(sub_rec.events)
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert calls == 0, "no get_token call for the subscribe itself"

            async def publish(n: int) -> None:
                await cent_call(server, "publish", PublishRequest(channel=channel, data={"n": n}))
                await wait_for(
                    lambda: sub_rec.count("publication") >= n, f"publication {n}", rec=sub_rec
                )

            await publish(1)
            await wait_for(lambda: calls >= 2, "two get_token calls", timeout=WATCH, rec=sub_rec)
            await publish(2)
            await asyncio.sleep(max(0.0, WATCH - (loop.time() - started)))
            await publish(3)
            got = [w.dec(ctx.pub.data) for ctx in sub_rec.events["publication"]]
            assert got == [{"n": 1}, {"n": 2}, {"n": 3}]
            assert calls >= 2, f"get_token calls: {calls}"
            assert sub.state == SubscriptionState.SUBSCRIBED
            assert sub_rec.count("subscribed") == 1, "never resubscribed"
            subscribing = sub_rec.events["subscribing"]
            assert len(subscribing) == 1, f"only the initial one: {subscribing!r}"
            assert sub_rec.count("unsubscribed") == 0, sub_rec.events["unsubscribed"]
            assert sub_rec.count("error") == 0, sub_rec.events["error"]
            assert rec.count("connected") == 1, "never reconnected"
            assert rec.events["connected"][0].client == client_id
            assert rec.count("disconnected") == 0

    run(scenario())


# Spindle answers a connection `refresh` whose new token is already expired by closing the
# connection with 3005 "connection expired" (hub/src/jwt/mod.rs, the table; docs/protocol.md §5.4), no
# error reply. 3005 is below 3500, so the SDK reconnects, with the token its refresh stored: the
# expired one. The connect is answered with error 109, which makes the SDK call get_token again;
# with a good token this time it connects: a new connection (new client id), no 'disconnected'.
def test_connection_get_token_expired_token_3005_then_109_then_connected(fmt, spindle):
    server = spindle(patch=PATCH)
    user = "stale"

    async def scenario():
        calls = 0

        async def get_token() -> str:
            nonlocal calls
            calls += 1
            return expired_token(user) if calls == 1 else token(user)

        async with World(fmt) as w:
            client, rec = w.client(server, token=short_token(user), get_token=get_token)
            await client.connect()
            await wait_for(
                lambda: rec.count("connected") or rec.count("disconnected"), "connect", rec=rec
            )
            first_id = rec.events["connected"][0].client
            await wait_for(
                lambda: rec.count("connected") >= 2 or rec.count("disconnected"),
                "the reconnect after the expired refresh",
                timeout=WATCH,
                rec=rec,
            )
            assert rec.count("disconnected") == 0, rec.events["disconnected"]
            assert rec.count("connected") == 2, dict(rec.events)
            assert calls == 2, "get_token: the refresh, then after the 109"
            connecting = [(c.code, c.reason) for c in rec.events["connecting"]]
            assert [code for code, _ in connecting] == [0, 3005], connecting
            assert connecting[1][1] == "connection expired", connecting
            codes = [getattr(e.error, "code", None) for e in rec.events["error"]]
            assert codes == [109], f"one error event, the 109 of the connect: {rec.events['error']!r}"
            assert rec.events["connected"][1].client != first_id, "a new connection"
            assert client.state == ClientState.CONNECTED

    run(scenario())
