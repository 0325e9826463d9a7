"""Starts a real ``spindle serve`` for a test and signs tokens.

The binary: ``$SPINDLE_BIN``, else ``<target dir>/debug/spindle`` where the target dir is
``$CARGO_TARGET_DIR`` (relative to the repository root when relative) or ``<repo>/target``.
The config: ``tests/fixtures/spindle.json`` (shared with the Rust and JS suites), optionally
patched per test, written to a temp dir. Any failure to start raises :class:`SpindleStartError`
whose message begins with ``could not start spindle``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
FIXTURE_PATH = os.path.join(REPO, "tests", "fixtures", "spindle.json")
with open(FIXTURE_PATH, encoding="utf-8") as f:
    FIXTURE: dict = json.load(f)
SECRET: str = FIXTURE["client"]["token"]["hmac_secret_key"]
API_KEY: str = FIXTURE["http_api"]["key"]

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
LISTENING = "spindle: listening on "


class SpindleStartError(RuntimeError):
    """The server could not be started; the message carries its stderr."""


def binary_path() -> str:
    if os.environ.get("SPINDLE_BIN"):
        return os.environ["SPINDLE_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    if not os.path.isabs(target):
        target = os.path.join(REPO, target)
    return os.path.join(target, "debug", "spindle")


def merge(base: Any, patch: Any) -> Any:
    """Objects merged key by key (recursively); anything else replaces; None deletes."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key in out:
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --- tokens ------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(claims: dict, secret: str = SECRET) -> str:
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64url(sig)}"


def token(user: str, **extra: Any) -> str:
    """A connection token for ``user``, valid for an hour, with extra claims."""
    now = int(time.time())
    return sign({"sub": user, "iat": now, "exp": now + 3600, **extra})


def expired_token(user: str) -> str:
    now = int(time.time())
    return sign({"sub": user, "iat": now - 3600, "exp": now - 60})


def badly_signed_token(user: str) -> str:
    now = int(time.time())
    return sign({"sub": user, "iat": now, "exp": now + 3600}, "not-the-secret-of-the-server")


_counter = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the server --------------------------------------------------------------------------------


class Server:
    """A running ``spindle serve``; :meth:`stop` sends SIGTERM and waits, :meth:`kill` kills."""

    def __init__(self, proc: subprocess.Popen, host: str, port: int, tmpdir: str, logs: dict):
        self.proc = proc
        self.host = host
        self.port = port
        self._tmpdir = tmpdir
        self._logs = logs

    @property
    def host_port(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"ws://{self.host_port}/connection/websocket"

    @property
    def http_url(self) -> str:
        return f"http://{self.host_port}"

    @property
    def api_url(self) -> str:
        """The base URL for ``cent.Client`` (it appends ``/<method>``)."""
        return f"{self.http_url}/api"

    @property
    def stderr(self) -> str:
        return "".join(self._logs["stderr"])

    def panics(self) -> list[str]:
        """Panic reports on stderr (the line naming the place, and the message after it)."""
        lines = self._logs["stderr"]
        found = []
        for i, line in enumerate(lines):
            if " panicked at " in line:
                found.append(line.rstrip())
                if line.rstrip().endswith(":") and i + 1 < len(lines):
                    found.append(lines[i + 1].rstrip())
        return found

    def check_no_panic(self) -> None:
        """A server that panicked (in a background task, say) fails the test that ran it."""
        panics = self.panics()
        if panics:
            joined = "\n".join(panics)
            raise AssertionError(f"spindle panicked during the test:\n{joined}")

    def stop(self) -> int:
        """SIGTERM, wait; the exit code (negative = killed by that signal). Raises if the
        server panicked at any time."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    raise RuntimeError(
                        f"spindle did not exit within {STOP_TIMEOUT} s after SIGTERM (killed)\n"
                        f"--- spindle stderr ---\n{self.stderr}"
                    )
            self.check_no_panic()
            return self.proc.returncode
        finally:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL (a test's fault injection or a cleanup); does not judge the server."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self._tmpdir, ignore_errors=True)


def stop_all(servers) -> None:
    """Stops every server (SIGTERM, or SIGKILL when that fails), then raises the first failure:
    a server that did not stop or that panicked fails the test."""
    failures = []
    for server in servers:
        try:
            server.stop()
        except Exception as e:  # noqa: BLE001 - every server is stopped before reporting
            server.kill()
            failures.append(e)
    if failures:
        raise failures[0]


def start_server(patch: Optional[dict] = None, port: int = 0, role: str = "serve") -> Server:
    """Starts ``spindle <role> -c <fixture+patch> -p <port>`` (role ``serve``, ``core`` or
    ``edge``) and waits for the listening line."""
    binary = binary_path()

    def fail(reason: str) -> SpindleStartError:
        return SpindleStartError(f"could not start spindle ({binary}): {reason}")

    if not os.path.isfile(binary):
        raise fail(
            "no such binary; build it with `cargo build -p spindle --bin spindle` "
            "(tests/sdk/run.sh does) or point SPINDLE_BIN at it"
        )
    tmpdir = tempfile.mkdtemp(prefix="spindle-py-")
    config_path = os.path.join(tmpdir, "config.json")
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(merge(FIXTURE, patch or {}), f, indent=2)
    try:
        proc = subprocess.Popen(
            [binary, role, "-c", config_path, "-p", str(port)],
            cwd=tmpdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
    except OSError as e:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise fail(f"spawn failed: {e}") from e

    logs: dict = {"stdout": [], "stderr": []}
    listening: dict = {}
    got_line = threading.Event()
    echo = bool(os.environ.get("SPINDLE_TEST_ECHO"))

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            logs["stdout"].append(line)
            if echo:
                print(f"[spindle] {line}", end="", flush=True)
            if line.startswith(LISTENING) and "line" not in listening:
                listening["line"] = line.strip()
                got_line.set()
        got_line.set()  # EOF: the process exited or closed stdout

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            logs["stderr"].append(line)
            if echo:
                print(f"[spindle] {line}", end="", flush=True)

    threading.Thread(target=read_stdout, daemon=True).start()
    stderr_thread = threading.Thread(target=read_stderr, daemon=True)
    stderr_thread.start()

    def with_logs(reason: str) -> SpindleStartError:
        stderr_thread.join(timeout=0.5)
        return fail(
            f"{reason}\n--- spindle stderr ---\n{''.join(logs['stderr'])}"
            f"\n--- spindle stdout ---\n{''.join(logs['stdout'])}"
        )

    def give_up(reason: str) -> SpindleStartError:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        error = with_logs(reason)
        shutil.rmtree(tmpdir, ignore_errors=True)
        return error

    if not got_line.wait(START_TIMEOUT):
        raise give_up(f"no `{LISTENING}<ip>:<port>` line on stdout within {START_TIMEOUT} s")
    line = listening.get("line")
    if line is None:
        try:
            code = proc.wait(timeout=2)
            reason = f"it exited (code {code}) without printing `{LISTENING}<ip>:<port>`"
        except subprocess.TimeoutExpired:
            reason = f"it closed stdout without printing `{LISTENING}<ip>:<port>`"
        raise give_up(reason)
    host, _, port_text = line[len(LISTENING):].strip().rpartition(":")
    host = host.strip("[]")
    if not port_text.isdigit():
        raise give_up(f"cannot parse the listening line {line!r}")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if port and int(port_text) != port:
        raise give_up(f"asked for port {port} but it listens on {port_text}")
    return Server(proc, host, int(port_text), tmpdir, logs)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_split(
    edges: int = 2, cores: int = 1, patch: Optional[dict] = None
) -> tuple[list[Server], list[Server], str]:
    """``cores`` x ``spindle core`` and ``edges`` x ``spindle edge`` joined by QUIC (certificates
    from ``spindle mesh gencerts``), ``patch`` merged into every node's config, each edge
    knowing every core (the first one first) and linked (its /health 200). Returns (cores,
    edges, certs dir); stop the servers and remove the dir afterwards."""
    certs = tempfile.mkdtemp(prefix="spindle-py-certs-")
    core_names = [f"core{i}" for i in range(1, cores + 1)]
    names = core_names + [f"edge{i}" for i in range(1, edges + 1)]
    subprocess.run(
        [binary_path(), "mesh", "gencerts", "--out", certs, "--nodes", ",".join(names)],
        check=True,
        capture_output=True,
    )

    def tls(node: str) -> dict:
        return {
            "cert_file": os.path.join(certs, f"{node}.pem"),
            "key_file": os.path.join(certs, f"{node}.key"),
            "ca_file": os.path.join(certs, "ca.pem"),
        }

    mesh_ports = [_free_udp_port() for _ in core_names]
    started_cores = []
    for name, mesh_port in zip(core_names, mesh_ports):
        node = {"mesh": {"listen": f"127.0.0.1:{mesh_port}", "node_name": name, "tls": tls(name)}}
        started_cores.append(start_server(merge(patch or {}, node), role="core"))
    started = []
    for i in range(1, edges + 1):
        node = {
            "mesh": {
                "cores": [f"127.0.0.1:{port}" for port in mesh_ports],
                "node_name": f"edge{i}",
                "tls": tls(f"edge{i}"),
            }
        }
        edge = start_server(merge(patch or {}, node), role="edge")
        started.append(edge)
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"{edge.http_url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SpindleStartError(f"edge{i} not linked within 15 s:\n{edge.stderr}")
            time.sleep(0.05)
    return started_cores, started, certs
