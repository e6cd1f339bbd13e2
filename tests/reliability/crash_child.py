"""The program that test_crash.py kills. Not a test module.

    crash_child.py zygote ROOT ROOTFS OPSFILE
        Imports pycontainer once, then serves lines on stdin:
          "go SEED PREFIX"  fork a worker (below); answers its pid
          "done PID"        reap that worker (the test has killed it); answers its raw
                            wait status
          "quit"            exit
        It is the child subreaper of its workers' descendants, so the container processes
        a killed worker leaves are re-parented to it, and it reaps their zombies (by pid,
        never waitpid(-1): its workers are reaped only on "done", so the test's pidfd of a
        worker never names a reused pid).

    crash_child.py single ROOT ROOTFS OPSFILE SEED PREFIX
        A fresh interpreter: prints "ready" once imported, then runs a worker.

A worker loops over three container ids (PREFIX-0..2) of the Factory at ROOT: create,
start an init (sleep), join a /bin/true, pause (until PAUSED), resume, sometimes destroy,
and load another of its containers; it never returns. Before each operation it writes the
operation's number into byte 0 of OPSFILE (shared, mmap'ed), so the test learns where the
kill landed. Any exception is a failure: traceback on stderr, exit status 3.
"""
import ctypes
import mmap
import os
import random
import select
import sys
import time
import traceback

import pycontainer as pc

OPS = ["forked", "create", "start-init", "join", "join-wait", "pause", "resume", "destroy",
       "load", "run_state", "processes", "stats"]


def worker(root, config, ops, seed, prefix):
    rng = random.Random(seed)
    f = pc.Factory(root)
    ids = [f"{prefix}-{i}" for i in range(3)]
    live = {}

    def op(name):
        ops[0] = OPS.index(name)

    try:
        while True:
            cid = rng.choice(ids)
            c = live.get(cid)
            if c is None:
                op("create")
                c = live[cid] = f.create(cid, config)
                op("start-init")
                c.start(pc.ProcessConfig(args=["sleep", "100"]))
            op("join")
            _, exits = c.start(pc.ProcessConfig(args=["/bin/true"]))
            op("join-wait")
            status = exits.get(timeout=10)
            assert status == 0, status
            op("pause")
            c.pause()
            while c.run_state() != pc.RunState.PAUSED:
                time.sleep(0.0005)
            op("resume")
            c.resume()
            others = [o for o in live if o != cid]
            if others:
                op("load")
                other = f.load(rng.choice(others))
                op("run_state")
                assert other.run_state() == pc.RunState.RUNNING
                op("processes")
                assert other.processes()
                op("stats")
                other.stats()
            if rng.random() < 0.5:
                op("destroy")
                c.destroy()
                del live[cid]
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)


def zombie_children(me, keep):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        rest = data[data.rindex(b")") + 2:].split()
        if rest[0] == b"Z" and int(rest[1]) == me and int(name) not in keep:
            out.append(int(name))
    return out


def zygote(root, config, ops):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:          # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl")
    me = os.getpid()
    workers = set()
    buf = b""
    out = sys.stdout
    while True:
        ready, _, _ = select.select([0], [], [], 0.01)
        for pid in zombie_children(me, workers):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if not ready:
            continue
        chunk = os.read(0, 4096)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            cmd = line.decode().split()
            if cmd[0] == "go":
                ops[0] = 0
                pid = os.fork()
                if pid == 0:
                    worker(root, config, ops, int(cmd[1]), cmd[2])
                    os._exit(4)
                workers.add(pid)
                out.write(f"{pid}\n")
            elif cmd[0] == "done":
                pid = int(cmd[1])
                _, status = os.waitpid(pid, 0)
                workers.discard(pid)
                out.write(f"{status}\n")
            elif cmd[0] == "quit":
                return
            out.flush()


def main():
    mode, root, rootfs, opsfile = sys.argv[1:5]
    config = pc.Config(rootfs=rootfs)
    fd = os.open(opsfile, os.O_RDWR)
    ops = mmap.mmap(fd, 4096)
    os.close(fd)
    if mode == "zygote":
        # Warm the per-process caches that forked workers inherit (cgroup detection, the
        # compiled seccomp profile, the device eBPF program), so that their 0-30 ms of
        # life reach past the first create. Starts no process: no watcher thread to fork.
        pc.Factory(root).create(f"zygote-warmup-{os.getpid()}", config).destroy()
        zygote(root, config, ops)
    else:
        seed, prefix = sys.argv[5:7]
        ops[0] = 0
        print("ready", flush=True)
        worker(root, config, ops, int(seed), prefix)


if __name__ == "__main__":
    main()
