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


def load_factor():
    """How much longer than on an idle machine things may take now: the run queue per CPU
    (1-minute load average), at least 1, at most 10. Deadlines of settle loops are
    multiplied by it; a condition met early ends them early all the same."""
    return min(10.0, max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1)))


def settle(check, timeout=5.0):
    """check() until it returns something falsy or the time is up (scaled by the load);
    its last value. (Processes die and cgroups empty asynchronously: give the kernel a
    moment.)"""
    deadline = time.monotonic() + timeout * load_factor()
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
    kept = devices.loaded_program_fds()
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
    """predicate() until it is true (its value) within `timeout` scaled by the load."""
    deadline = time.monotonic() + timeout * load_factor()
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


# --- this test run's own cgroup ----------------------------------------------------------
# Containers go below <the caller's own cgroup>/pycontainer by default. isolate_cgroups()
# moves the test process (and so the CLIs and helper processes it starts, which inherit
# its cgroups) into a cgroup of its own, <own>/pytest-<pid>, in every hierarchy: its
# containers then land in <own>/pytest-<pid>/pycontainer, apart from those of any other
# test run or job on the machine, and the leak checks look there alone.

_moved = []     # [(hierarchy's own dir before the move, [the dirs made, outermost first])]


def isolate_cgroups():
    """Moves this process into a cgroup of its own, <own>/pytest-<pid>, in every
    hierarchy the library uses. Where our own cgroups are all on one path (each the root
    or an ancestor of the deepest: a hybrid host where only the memory cgroup is someone
    else's), the run's cgroup is <deepest>/pytest-<pid> in every hierarchy, so that the
    path stays one in all of them, as OCI clients expect (see cli --nest-cgroups).
    Not done (False) unless root, nor on a cgroup2 whose own cgroup hands controllers to
    its children: a cgroup holding a process cannot, so containers would lose them."""
    from pycontainer import cgroups
    if os.geteuid() != 0 or _moved:
        return bool(_moved)
    hierarchies = _hierarchies()
    for h in hierarchies:
        if not h.controllers:
            with open(os.path.join(h.own_dir, "cgroup.subtree_control")) as f:
                if f.read().split():
                    return False
    deepest = max((h.own for h in hierarchies), key=len, default="/").rstrip("/")
    one_path = all(h.own == "/" or (deepest + "/").startswith(h.own.rstrip("/") + "/")
                   for h in hierarchies)
    for h in hierarchies:
        base = deepest if one_path else h.own.rstrip("/")
        made = _make_cgroup(h, f"{base}/pytest-{os.getpid()}")
        _moved.append((h.own_dir, made))
        with open(os.path.join(made[-1], "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    cgroups.detect.cache_clear()
    return True


def _make_cgroup(h, path):
    """mkdir -p of cgroup `path` in hierarchy h; the dirs it made, outermost first. A v1
    cpuset takes no process until its cpus and mems are set: each new one gets its
    parent's. (Another run may remove a parent it made just then: tried again.)"""
    for _ in range(5):
        made, d = [], h.own_dir
        try:
            for part in path[len(h.own.rstrip("/")):].strip("/").split("/"):
                d = os.path.join(d, part)
                try:
                    os.mkdir(d)
                except FileExistsError:
                    continue
                made.append(d)
                if "cpuset" in h.controllers:
                    for knob in ("cpuset.cpus", "cpuset.mems"):
                        with open(os.path.join(os.path.dirname(d), knob)) as src, \
                                open(os.path.join(d, knob), "w") as dst:
                            dst.write(src.read())
            return made or [d]
        except FileNotFoundError:
            continue
    raise RuntimeError(f"could not make cgroup {path} in {h.mountpoint}")


def restore_cgroups():
    """Moves this process back and removes the cgroups the run made, those that are
    empty (a container left behind keeps them, and a leak check has said so; another
    run may be using a parent)."""
    while _moved:
        own, made = _moved.pop()
        with open(os.path.join(own, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
        for d in [os.path.join(made[-1], "pycontainer")] + made[::-1]:
            try:
                os.rmdir(d)
            except OSError:
                pass
        _remove_dead_runs(os.path.dirname(made[-1]))
    from pycontainer import cgroups
    cgroups.detect.cache_clear()


def _remove_dead_runs(parent):
    """The empty cgroups of earlier runs whose process is gone (a run killed before its
    restore_cgroups: the crash tests' creators, a timeout). Only pytest-<pid> trees, and
    rmdir removes nothing that still holds a process or a cgroup of someone else's.
    (The parent is gone when this run made it and it was left empty.)"""
    try:
        names = os.listdir(parent)
    except FileNotFoundError:
        return
    for name in names:
        if not (name.startswith("pytest-") and name[7:].isdigit()) or \
                os.path.exists(f"/proc/{name[7:]}"):
            continue
        for dirpath, _, _ in os.walk(os.path.join(parent, name), topdown=False):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def _hierarchies():
    """The hierarchies the library uses (whatever PYCONTAINER_CGROUP_MODE a test sets),
    as this process sits in them now; co-mounted controllers once."""
    from pycontainer import cgroups
    with open("/proc/self/mountinfo") as m, open("/proc/self/cgroup") as c:
        host = cgroups.build_host(m.read(), c.read(), "auto")
    found = {id(h): h for h in host.v1.values()}
    if host.unified is not None:
        found[id(host.unified)] = host.unified
    return list(found.values())


def _default_parent(h):
    """The cgroup path (as /proc/<pid>/cgroup prints it) of the parent this process's
    containers get by default in hierarchy h: <own>/pycontainer."""
    from pycontainer import cgroups
    return f"{h.own.rstrip('/')}/{cgroups.DEFAULT_PARENT}"


def cgroup_dirs(prefixes):
    """Container cgroup directories of this test run (below its default parent in each
    hierarchy: <own>/pycontainer) whose name starts with one of `prefixes`."""
    prefixes = tuple(prefixes)
    found = set()
    for h in _hierarchies():
        parent = h.dir_of(_default_parent(h))
        try:
            names = os.listdir(parent)
        except FileNotFoundError:
            continue
        found.update(os.path.join(parent, n) for n in names
                     if n.startswith(prefixes) and os.path.isdir(os.path.join(parent, n)))
    return sorted(found)


def processes_in_cgroups(prefixes):
    """Pids of processes in one of this run's container cgroups (as cgroup_dirs) whose
    name starts with one of `prefixes`."""
    needles = tuple(f"{_default_parent(h)}/{p}" for h in _hierarchies() for p in prefixes)
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cgroup") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        if any(line.split(":", 2)[-1].startswith(needles) for line in lines):
            pids.append(int(name))
    return sorted(pids)


def write_bundle(directory, rootfs, args=("sleep", "1000"), mutate=None):
    """Make `directory` an OCI bundle: config.json is our default spec on `rootfs` running
    `args`, changed by mutate(spec) when given. Returns the directory as a str."""
    import json
    from pycontainer.oci.spec import default_spec
    os.makedirs(directory)
    spec = default_spec()
    spec["root"]["path"] = rootfs
    spec["process"]["args"] = list(args)
    if mutate:
        mutate(spec)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(spec, f)
    return str(directory)


def pooled_create(factory, cid, config):
    """A container of `config` taken from a Pool: a prepared sandbox whose init is parked.
    When preparing one fails (a Config whose mount or device fails), Pool.create makes it
    the normal way, as it does for an empty pool: start() then reports that failure, as
    it does unpooled."""
    with factory.pool(config, size=1) as pool:
        try:
            pool.wait_ready()
        except pc.ContainerError:
            return pool.create(cid)
        c = pool.create(cid)
        assert pool.stats().hits == 1, pool.stats()
        return c
