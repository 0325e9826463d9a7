#!/usr/bin/env python3
"""A per-test deadline for `cargo test`, which has none of its own.

    scripts/test_deadline.py SECONDS -- cargo test ...

Runs the command and passes its output through. libtest (stable) prints
`test NAME has been running for over 60 seconds` when a test passes the minute mark, and
`test NAME ... ok|FAILED` when it ends; from those two lines this script knows every test that
has been running for over a minute and since when. A test still running SECONDS after it
started gets its whole test binary killed (with every process the binary started, such as
servers), so cargo reports that binary failed and, with --no-fail-fast, goes on with the next.
The run then fails, naming the test: a deadlock costs SECONDS, not the CI's whole budget.

At the end it lists the tests that ran over a minute, slowest first: the figures to watch when
choosing SECONDS. Exit status: the command's, or 124 when a test was killed.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time

MINUTE_MARK = 60.0  # libtest's fixed warning threshold (stable Rust has no flag to change it)
LONG = re.compile(r"test (\S+) has been running for over 60 seconds")
ENDED = re.compile(r"^test (\S+) \.\.\. ")
BINARY_DONE = re.compile(r"^test result: ")


class Watch:
    """Tests past the minute mark that have not ended yet, and how long the long ones took."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running = {}  # name -> monotonic start
        self.long = {}  # name -> seconds (lower bound while running)

    def line(self, text):
        now = time.monotonic()
        with self.lock:
            for name in LONG.findall(text):
                self.running[name] = now - MINUTE_MARK
                self.long[name] = MINUTE_MARK
            ended = ENDED.match(text)
            if ended and ended.group(1) in self.running:
                name = ended.group(1)
                self.long[name] = now - self.running.pop(name)
            if BINARY_DONE.match(text):
                self.running.clear()

    def overdue(self, limit):
        now = time.monotonic()
        with self.lock:
            late = [n for n, start in self.running.items() if now - start > limit]
            if late:
                for name in late:
                    self.long[name] = now - self.running[name]
                # The binary dies whole: none of its tests is running any more.
                self.running.clear()
            return late


def descendants(root):
    """Every process below `root`, from /proc (children before their own children)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # The command name is in parentheses and may hold spaces: split after it.
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], list(parents.get(root, []))
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue.extend(parents.get(pid, []))
    return found


def main(argv):
    if len(argv) < 4 or argv[2] != "--" or not argv[1].isdigit():
        sys.stderr.write(__doc__)
        return 2
    limit = float(argv[1])
    command = argv[3:]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, errors="replace")
    watch = Watch()

    def pump():
        for text in child.stdout:
            sys.stdout.write(text)
            sys.stdout.flush()
            watch.line(text)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    killed = []
    while child.poll() is None:
        time.sleep(1)
        late = watch.overdue(limit)
        if late:
            # The test binary is cargo's child; it and everything it started go.
            victims = descendants(child.pid)
            print(
                f"\ntest_deadline: {', '.join(late)} still running after {limit:.0f} s: "
                f"killing its test binary (pids {victims})",
                flush=True,
            )
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            killed.extend(late)
    reader.join()

    if watch.long:
        print("\ntest_deadline: tests that ran over a minute (limit %.0f s):" % limit)
        for name, seconds in sorted(watch.long.items(), key=lambda item: -item[1]):
            print(f"  {seconds:6.0f} s  {name}{'  (KILLED)' if name in killed else ''}")
    if killed:
        print(f"test_deadline: FAILED: over the {limit:.0f} s per-test deadline: {', '.join(killed)}")
        return 124
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
