"""Fixtures: the encoding (every test runs in JSON and in Protobuf) and a server factory that
starts spindle inside the test (so a start failure is a test failure saying
"could not start spindle ...") and stops whatever it started afterwards."""

import pytest

from spindle_harness import Server, start_server, stop_all


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
    # A server that panicked or did not stop fails the test (at teardown).
    stop_all(started)
