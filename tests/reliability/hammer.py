"""The operation mix of test_concurrency.py, shared by its threads and its processes.
Not a test module.

    python hammer.py ROOT ID SEED SECONDS MARKER
        Loads container ID, prints "ready", waits for a line on stdin, hammers it for
        SECONDS and prints its Tally as JSON. MARKER is a file the test creates just
        before it destroys the container.
"""
import collections
import json
import os
import random
import sys
import time
import traceback

import pycontainer as pc

OPS = ("start", "processes", "stats", "pause", "resume", "run_state")
LIVE_STATES = (pc.RunState.RUNNING, pc.RunState.PAUSING, pc.RunState.PAUSED)


class Tally:
    """Counts of (operation, outcome), and the unexpected outcomes in full."""

    def __init__(self):
        self.counts = collections.Counter()
        self.unexpected = []

    def ok(self, op, outcome):
        self.counts[f"{op}: {outcome}"] += 1

    def bad(self, op, what):
        self.counts[f"{op}: UNEXPECTED"] += 1
        if len(self.unexpected) < 20:
            self.unexpected.append(f"{op}: {what}")

    def merge(self, other):
        self.counts.update(other.counts)
        self.unexpected.extend(other.unexpected)

    def to_json(self):
        return json.dumps({"counts": dict(self.counts), "unexpected": self.unexpected})

    @classmethod
    def from_json(cls, text):
        d = json.loads(text)
        t = cls()
        t.counts.update(d["counts"])
        t.unexpected = d["unexpected"]
        return t


def one_call(c, op, destroying, tally):
    """Run one operation; every outcome must be one the documented API allows for the
    states it may have raced with: ContainerPausedError for a start while paused (or
    pausing), ContainerNotExistError (and a -SIGKILL status, and STOPPED) only once the
    destroy has begun. Nothing else: no ContainerNotRunningError (the init never exits
    by itself here), no ContainerSystemError, no other exception."""
    try:
        if op == "start":
            _, exits = c.start(pc.ProcessConfig(args=["/bin/true"]))
            status = exits.get(timeout=60)
            if status == 0:
                tally.ok(op, "exit 0")
            elif status == -9 and destroying():
                tally.ok(op, "killed by the destroy")
            else:
                tally.bad(op, f"status {status}")
        elif op == "processes":
            pids = c.processes()
            tally.ok(op, "ok" if pids else "empty")
            if not pids and not destroying():
                tally.bad(op, "no processes while the init runs")
        elif op == "stats":
            c.stats()
            tally.ok(op, "ok")
        elif op == "pause":
            c.pause()
            tally.ok(op, "ok")
        elif op == "resume":
            c.resume()
            tally.ok(op, "ok")
        elif op == "run_state":
            state = c.run_state()
            if state in LIVE_STATES or (state == pc.RunState.STOPPED and destroying()):
                tally.ok(op, str(state))
            else:
                tally.bad(op, f"run_state {state}")
    except pc.ContainerPausedError:
        if op == "start":
            tally.ok(op, "ContainerPausedError")
        else:
            tally.bad(op, traceback.format_exc(limit=4))
    except pc.ContainerNotExistError:
        if destroying():
            tally.ok(op, "ContainerNotExistError")
        else:
            tally.bad(op, "ContainerNotExistError before the destroy: "
                      + traceback.format_exc(limit=4))
    except Exception:
        tally.bad(op, traceback.format_exc(limit=6))


def hammer(c, seed, seconds, destroying, tally):
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        one_call(c, rng.choice(OPS), destroying, tally)


def main():
    root, cid, seed, seconds, marker = sys.argv[1:6]
    c = pc.Factory(root).load(cid)
    print("ready", flush=True)
    sys.stdin.readline()
    tally = Tally()
    hammer(c, int(seed), float(seconds), lambda: os.path.exists(marker), tally)
    print(tally.to_json(), flush=True)


if __name__ == "__main__":
    main()
