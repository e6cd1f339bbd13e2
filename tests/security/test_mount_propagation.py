"""Mount propagation cannot carry the container's mounts, or its unmounts, to the host.

containerd asks for `linux.rootfsPropagation: rshared` and an "rshared" bind for a
Kubernetes volume with Bidirectional propagation (critest: "mount with 'rshared'
propagation host<->container"). That volume must then be a peer of the host's mount, both
ways; everything else of the container must stay cut from the host: what root inside
mounts on its own root, /proc, /dev or /tmp, and the unmounts of the container's end
(the old root detached after pivot_root, the namespace torn down when init dies). An
"rslave" volume only receives.

The "host" mounts here are tmpfs instances the tests make in a scratch directory and make
shared themselves (this host's own mounts are left as they are); every one is unmounted
at the end whatever happens. The container's own mounts carry a token of the test in
their source name, so the host's mountinfo is searched for exactly them (other tests mount
and unmount on this machine at the same time).
"""
import errno
import os
import subprocess
import sys
import uuid

import pytest

import pycontainer as pc
from helpers import read_pipes

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
import test_cli  # noqa: E402  (tests/integration)
from test_cli import wait_status  # noqa: E402

oci, make_bundle = test_cli.oci, test_cli.make_bundle      # the CLI tests' fixtures


def host_mountinfo():
    """(mount point, source) of every mount in the test process's (the host's) namespace."""
    with open("/proc/self/mountinfo") as f:
        rows = []
        for line in f:
            fields = line.split()
            dash = fields.index("-")
            rows.append((fields[4], fields[dash + 2]))
        return rows


def mounted_at(path):
    return [src for point, src in host_mountinfo() if point == path]


def propagation_of(path):
    """The optional fields (shared:N, master:N) of the top mount at path."""
    with open("/proc/self/mountinfo") as f:
        found = None
        for line in f:
            fields = line.split()
            if fields[4] == path:
                found = fields[6:fields.index("-")]
        return found


class Scratch:
    """A private scratch directory for "host" mounts, each unmounted by the finalizer."""

    def __init__(self, where):
        self.where = where
        self.made = []

    def tmpfs(self, name, source, shared=True):
        path = os.path.join(self.where, name)
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", source, path], check=True)
        self.made.append(path)
        if shared:
            subprocess.run(["mount", "--make-shared", path], check=True)
        return path

    def cleanup(self):
        # Deepest first; -R also takes what a container propagated out below them.
        for path in reversed(self.made):
            subprocess.run(["umount", "-R", path], check=False,
                           stderr=subprocess.DEVNULL)
        left = [p for p, _ in host_mountinfo() if p.startswith(self.where + "/")]
        assert not left, f"mounts left behind: {left}"


@pytest.fixture
def scratch(tmp_path):
    s = Scratch(str(tmp_path / "host"))
    os.mkdir(s.where)
    yield s
    s.cleanup()


@pytest.fixture
def token():
    return "pcprop" + uuid.uuid4().hex[:10]


def host_has(token):
    return [(p, s) for p, s in host_mountinfo() if token in s]


class Running:
    """A library container running `script` with a line protocol: the host waits for the
    lines it prints (wait_for) and lets it go on by writing to its stdin (go)."""

    def __init__(self, factory, cid, config, script):
        self.c = factory.create(cid, config)
        self.r, w = os.pipe()
        go_r, self.go_w = os.pipe()
        self.buf = b""
        try:
            self.proc, self.exits = self.c.start(pc.ProcessConfig(
                args=["sh", "-c", "set -e; " + script], stdin=go_r, stdout=w, stderr=w))
        except BaseException:
            os.close(self.r)
            os.close(self.go_w)
            self.c.destroy()
            raise
        finally:
            os.close(go_r)
            os.close(w)

    def wait_for(self, marker):
        """What it printed before the line `marker`."""
        line = (marker + "\n").encode()
        while line not in self.buf:
            chunk = os.read(self.r, 4096)
            assert chunk, f"container ended before {marker!r}: {self.buf.decode()!r}"
            self.buf += chunk
        before, self.buf = self.buf.split(line, 1)
        return before.decode()

    def go(self):
        os.write(self.go_w, b"\n")

    def finish(self):
        """Its remaining output, once it exited 0."""
        os.close(self.go_w)
        self.go_w = None
        out = self.buf.decode() + read_pipes([self.r])[0]
        self.r = None
        assert self.exits.get(timeout=10) == 0, out
        return out

    def close(self):
        for fd in (self.r, self.go_w):
            if fd is not None:
                os.close(fd)
        self.c.destroy()


def volume_config(rootfs, source, prop, rootfs_prop):
    return pc.Config(rootfs=rootfs, rootfs_propagation=rootfs_prop, capabilities=None,
                     seccomp=None, mounts=[pc.Mount("/vol", source, options=("rbind", prop))])


# --- (a) + (b): the container's own mounts and unmounts stay inside ----------------------

def test_an_rshared_container_mounts_nothing_on_the_host(factory, busybox_rootfs, scratch,
                                                          token):
    """rootfsPropagation rshared with an rshared volume: root inside mounts on its own
    root, /tmp, /dev, /proc, binds its root, makes everything shared again, and none of it
    appears on the host; its death unmounts no host mount, neither one under the volume
    nor a shared one it never saw."""
    vol = scratch.tmpfs("vol", token + "-vol")
    keep = scratch.tmpfs("vol/keep", token + "-keep")
    bystander = scratch.tmpfs("bystander", token + "-bystander")
    script = (
        f"mount -t tmpfs {token}-evil-root /data; "
        f"mount -t tmpfs {token}-evil-tmp /tmp; mount -t tmpfs {token}-evil-dev /dev/shm; "
        f"mount -t tmpfs {token}-evil-proc /proc/fs; mount --rbind / /root; "
        f"mount --make-rshared /; mount -t tmpfs {token}-evil-late /data; "
        "grep -c evil /proc/self/mountinfo; test -d /vol/keep; echo mounted; read x")
    run = Running(factory, "prop-a", volume_config(busybox_rootfs, vol, "rshared", "rshared"),
                  script)
    try:
        # Its own mounts are there, inside: 6 evil ones, and the copies of /root.
        assert int(run.wait_for("mounted")) >= 6
        assert host_has(token + "-evil") == []
        run.go()
        run.finish()
    finally:
        run.close()
    # The container is gone: its namespace is torn down. Nothing of the host's went with it.
    assert host_has(token + "-evil") == []
    assert mounted_at(keep) == [token + "-keep"]
    assert mounted_at(vol) == [token + "-vol"]
    assert mounted_at(bystander) == [token + "-bystander"]
    assert propagation_of(vol)[0].startswith("shared:")


def test_init_dying_unmounts_nothing_of_the_host(factory, busybox_rootfs, scratch, token):
    """The container's init killed (not a clean exit), then destroyed: the shared host
    mounts it saw through its volume stay mounted on the host."""
    vol = scratch.tmpfs("vol", token + "-vol")
    keep = scratch.tmpfs("vol/keep", token + "-keep")
    run = Running(factory, "prop-b", volume_config(busybox_rootfs, vol, "rshared", "rshared"),
                  "test -d /vol/keep; echo up; read x")
    try:
        run.wait_for("up")
        run.c.signal(9)
        os.close(run.go_w)
        run.go_w = None
        assert run.exits.get(timeout=10) != 0
    finally:
        run.close()
    assert mounted_at(keep) == [token + "-keep"]
    assert mounted_at(vol) == [token + "-vol"]


# --- (c) + (d): only the volume that asks propagates, and only the way it asks -------------

@pytest.mark.parametrize("prop,rootfs_prop,outward", [
    ("rshared", "rshared", True),      # Bidirectional: both ways
    ("rshared", None, False),          # runc's rule: outward needs a shared rootfs
    ("rslave", "rslave", False),       # HostToContainer
    ("rslave", None, False),           # a slave volume under the default (private) rootfs
])
def test_volume_propagation(factory, busybox_rootfs, scratch, token, prop, rootfs_prop,
                            outward):
    """The volume receives what the host mounts below it later; it sends only when it is
    rshared under a shared rootfs. A plain bind next to it sends nothing ever, and
    receives only under an rslave rootfs (it inherits that, as runc's binds do)."""
    vol = scratch.tmpfs("vol", token + "-vol")
    scratch.tmpfs("vol/before", token + "-before")
    other = scratch.tmpfs("other", token + "-other")
    os.makedirs(os.path.join(vol, "out"))
    config = pc.Config(rootfs=busybox_rootfs, rootfs_propagation=rootfs_prop,
                       capabilities=None, seccomp=None,
                       mounts=[pc.Mount("/vol", vol, options=("rbind", prop)),
                               pc.Mount("/other", other, options=("rbind",))])
    script = (f"mount -t tmpfs {token}-out /vol/out; echo made > /vol/out/f; "
              f"mkdir /other/in; mount -t tmpfs {token}-in /other/in; "
              "echo ready; read x; cat /vol/later/f; "
              "if test -e /other/late/f; then echo other-received; fi; echo done")
    run = Running(factory, "prop-c", config, script)
    try:
        run.wait_for("ready")
        # Container -> host: only an rshared volume under a shared rootfs.
        assert mounted_at(os.path.join(vol, "out")) == ([token + "-out"] if outward else [])
        assert mounted_at(os.path.join(other, "in")) == []
        assert host_has(token + "-in") == []
        # Host -> container: both kinds of volume.
        later = scratch.tmpfs("vol/later", token + "-later", shared=False)
        with open(os.path.join(later, "f"), "w") as f:
            f.write("from the host\n")
        late = scratch.tmpfs("other/late", token + "-late", shared=False)
        with open(os.path.join(late, "f"), "w") as f:
            f.write("should not arrive\n")
        run.go()
        leaked = "other-received\n" if rootfs_prop == "rslave" else ""
        assert run.finish() == "from the host\n" + leaked + "done\n"
    finally:
        run.close()
    if outward:     # what the container made on the host is the test's to remove
        with open(os.path.join(vol, "out", "f")) as f:
            assert f.read() == "made\n"
        subprocess.run(["umount", os.path.join(vol, "out")], check=True)
    assert host_has(token + "-out") == [] and host_has(token + "-in") == []


def test_a_host_mount_made_before_the_start_is_seen_in_an_rslave_volume(
        factory, busybox_rootfs, scratch, token):
    vol = scratch.tmpfs("vol", token + "-vol")
    before = scratch.tmpfs("vol/before", token + "-before")
    with open(os.path.join(before, "f"), "w") as f:
        f.write("there\n")
    run = Running(factory, "prop-d", volume_config(busybox_rootfs, vol, "rslave", "rslave"),
                  "cat /vol/before/f; umount /vol/before; echo gone")
    try:
        assert run.finish() == "there\ngone\n"
    finally:
        run.close()
    # A slave's unmount is its own: the host's mount stays.
    assert mounted_at(before) == [token + "-before"]


# --- through the CLI: the config.json containerd writes for a Bidirectional volume --------

def test_rshared_volume_through_the_cli(oci, make_bundle, tmp_path, scratch, token):
    vol = scratch.tmpfs("vol", token + "-vol")
    before = scratch.tmpfs("vol/before", token + "-before")
    with open(os.path.join(before, "f"), "w") as f:
        f.write("host side\n")
    out = tmp_path / "out"
    out.mkdir()

    def mutate(s):
        s["linux"]["rootfsPropagation"] = "rshared"
        s["mounts"] += [
            {"destination": "/vol", "type": "bind", "source": vol,
             "options": ["rbind", "rshared", "rw"]},
            {"destination": "/run", "type": "bind", "source": str(out),
             "options": ["rbind", "rprivate"]}]
        s["process"]["capabilities"] = {k: ["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE"] for k in (
            "bounding", "effective", "permitted")}
    script = (f"exec >/run/log 2>&1; set -e; cat /vol/before/f; mkdir /vol/out; "
              f"mount -t tmpfs {token}-out /vol/out; echo made > /vol/out/f; "
              f"mount -t tmpfs {token}-evil /data; mount -t tmpfs {token}-evil /tmp; "
              "echo ok")
    b = make_bundle(["sh", "-c", script], mutate=mutate)
    oci.ok("create", "-b", b, "prop-cli")
    oci.ok("start", "prop-cli")
    wait_status(oci, "prop-cli", "stopped")
    oci.ok("delete", "prop-cli")
    assert (out / "log").read_text() == "host side\nok\n"
    assert mounted_at(os.path.join(vol, "out")) == [token + "-out"]
    with open(os.path.join(vol, "out", "f")) as f:
        assert f.read() == "made\n"
    subprocess.run(["umount", os.path.join(vol, "out")], check=True)
    assert host_has(token + "-evil") == []
    assert mounted_at(before) == [token + "-before"]


# --- failures: clear, and nothing left on the host -----------------------------------------

def test_a_missing_rshared_source_fails_cleanly(factory, busybox_rootfs, scratch, token,
                                                tmp_path):
    from test_errors_cleanup import start_fails
    vol = scratch.tmpfs("vol", token + "-vol")
    c = factory.create("prop-err", pc.Config(rootfs=busybox_rootfs, rootfs_propagation="rshared",
                                             mounts=[pc.Mount("/vol", vol, options=("rshared",)),
                                                     pc.Mount("/gone", str(tmp_path / "gone"),
                                                              options=("rbind", "rshared"))]))
    try:
        start_fails(c, pc.ProcessConfig(args=["true"]), err=errno.ENOENT, stage="bind_source",
                    contains=["/gone"])
    finally:
        c.destroy()
    assert not (tmp_path / "gone").exists()
    assert host_has(token) == [(vol, token + "-vol")]
    assert [p for p, _ in host_mountinfo() if p.startswith(scratch.where)] == [vol]


def test_an_rshared_volume_onto_the_root_is_refused(factory, busybox_rootfs, scratch, token):
    """A cloned tree is moved only onto a destination inside the root, never over it."""
    from test_errors_cleanup import start_fails
    vol = scratch.tmpfs("vol", token + "-vol")
    c = factory.create("prop-root", pc.Config(rootfs=busybox_rootfs, rootfs_propagation="rshared",
                                              mounts=[pc.Mount("/.", vol,
                                                               options=("rbind", "rshared"))]))
    try:
        start_fails(c, pc.ProcessConfig(args=["true"]), err=errno.EINVAL, stage="mount",
                    contains=["/."])
    finally:
        c.destroy()
    assert host_has(token) == [(vol, token + "-vol")]


def test_too_many_propagating_binds_are_refused(factory, busybox_rootfs, scratch, token):
    """The clones are held in the child's stack: more than 64 binds asking for shared or
    slave propagation fail the start, naming the first one over, and leave nothing."""
    from test_errors_cleanup import start_fails
    vol = scratch.tmpfs("vol", token + "-vol")
    mounts = [pc.Mount(f"/v{i}", vol, options=("rbind", "rslave")) for i in range(65)]
    c = factory.create("prop-many", pc.Config(rootfs=busybox_rootfs, mounts=mounts))
    try:
        start_fails(c, pc.ProcessConfig(args=["true"]), err=errno.E2BIG, stage="mount",
                    contains=["/v64"])
    finally:
        c.destroy()
    assert [p for p, _ in host_mountinfo() if p.startswith(scratch.where)] == [vol]
    # 64 are fine.
    c = factory.create("prop-64", pc.Config(rootfs=busybox_rootfs, mounts=mounts[:64]))
    try:
        _, exits = c.start(pc.ProcessConfig(args=["test", "-d", "/v63"]))
        assert exits.get(timeout=30) == 0
    finally:
        c.destroy()
