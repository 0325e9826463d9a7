"""Fixtures: the encoding (every test runs in JSON and in Protobuf) and a server factory that
starts spindle inside the test (so a start failure is a test failure saying
"could not start spindle ...") and stops whatever it started afterwards."""

import pytest

from spindle_harness import Server, start_server


@pytest.fixture(params=["json", "protobuf"])
def fmt(request) -> str:
    return request.param


@pytest.fixture
def spindle():
    started: list[Server] = []

    def start(patch=None, port: int = 0) -> Server:
        server = start_server(patch=patch, port=port)
        started.append(server)
        return server

    yield start
    for server in started:
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - cleanup must not mask the test's own failure
            server.kill()
