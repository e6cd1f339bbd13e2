"""Helpers the integration tests share: run a program in a container and read its
output without hanging."""
import errno
import os
import select
import selectors
import time

import pycontainer as pc


def read_pipes(fds, timeout=10):
    """Read every fd until EOF; returns their data (str). Closes them."""
    sel = selectors.DefaultSelector()
    out = {fd: bytearray() for fd in fds}
    for fd in fds:
        sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            assert left > 0, "a container process kept its output open (hang guard)"
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    out[key.fd] += chunk
                else:
                    sel.unregister(key.fd)
    finally:
        sel.close()
        for fd in fds:
            os.close(fd)
    return [out[fd].decode() for fd in fds]


def run(c, args, **kw):
    """Start `args` in container c with stdout and stderr on pipes; wait for it.
    Returns (status, stdout, stderr, pid)."""
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    try:
        pid, exits = c.start(pc.ProcessConfig(args=args, stdout=w_out, stderr=w_err, **kw))
    except BaseException:
        os.close(r_out)
        os.close(r_err)
        raise
    finally:
        os.close(w_out)
        os.close(w_err)
    out, err = read_pipes([r_out, r_err])
    return exits.get(timeout=10), out, err, pid


def sh(c, script, **kw):
    """(status, stdout, stderr) of `/bin/sh -c script` in c."""
    status, out, err, _ = run(c, ["/bin/sh", "-c", script], **kw)
    return status, out, err


def sh_ok(c, script, **kw):
    status, out, err = sh(c, script, **kw)
    assert status == 0, (script, status, out, err)
    return out


def start_bg(c, args, **kw):
    """Start a long-running process with /dev/null stdio; (pid, exits)."""
    return c.start(pc.ProcessConfig(args=args, **kw))


def settle(check, timeout=5.0):
    """check() until it returns something falsy or the time is up; its last value.
    (Processes die and cgroups empty asynchronously: give the kernel a moment.)"""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def library_fds():
    """Descriptor numbers the library keeps for the life of the process by design: each
    device-policy eBPF program (loaded once, attached to every container cgroup with that
    policy) and the join helper's sealed memfd. (The exit watcher's epoll set is told by
    its target, "[eventpoll]".)"""
    from pycontainer import _core, devices
    kept = set(devices._loaded.values())
    if _core._join_helper is not None:
        kept.add(_core._join_helper[0])
    return kept


def open_fds(ignore=()):
    """{(fd, target)} of this process's descriptors, but those whose target contains one
    of `ignore` (kept for the life of the process by design: the exit watcher's
    "[eventpoll]", device-policy "bpf-prog"s)."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if not any(word in target for word in ignore):
            fds.add((int(name), target))
    return fds


def converse(master, script, timeout=10):
    """Write `script` to the terminal and read everything until the process hangs up."""
    os.write(master, script.encode())
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        assert ready, f"the terminal went quiet; so far {out!r}"
        try:
            chunk = os.read(master, 4096)
        except OSError as exc:          # EIO: the last holder of the peer has gone
            assert exc.errno == errno.EIO
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return out.decode()


def wait_for(predicate, timeout=5.0, what="condition", interval=0.005):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def cgroup_dirs(prefixes):
    """Directories below /sys/fs/cgroup, inside a 'pycontainer' parent, whose name starts
    with one of `prefixes` (as `find /sys/fs/cgroup -type d -path '*/pycontainer/*'`
    restricted to this test's containers)."""
    prefixes = tuple(prefixes)
    found = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(os.path.dirname(dirpath)) == "pycontainer" \
                and os.path.basename(dirpath).startswith(prefixes):
            found.append(dirpath)
            dirnames[:] = []
        elif dirpath.count("/") > 12:
            dirnames[:] = []
    return sorted(found)


def processes_in_cgroups(prefixes):
    """Pids of processes whose /proc/<pid>/cgroup names a 'pycontainer/<prefix...>' cgroup."""
    needles = tuple(f"/pycontainer/{p}" for p in prefixes)
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cgroup") as f:
                text = f.read()
        except OSError:
            continue
        if any(n in text for n in needles):
            pids.append(int(name))
    return sorted(pids)
