"""Networks: veth pairs on a bridge, namespaces joined by path, and the failure paths.

Real kernel, no mocks. Nothing touches the machine's networking: each test that makes
interfaces runs its body in a thread that unshared CLONE_NEWNET (`private_netns`), so its
bridge and the host ends of its veths live in a network namespace of its own, which dies
with the thread. Within it the "host" is that namespace: the thread calls start, and
pycontainer makes the veths in the calling thread's namespace. After each body, no veth
may be left in it, and no interface with our prefix in the real host namespace.
"""
import errno
import functools
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

import pycontainer as pc
from pycontainer import _core

from helpers import read_pipes, settle, sh_ok  # tests/helpers.py

pyroute2 = pytest.importorskip("pyroute2")

CLONE_NEWNET = 0x40000000
PREFIX = "pct"                     # every host-side name a test makes starts with it
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- the private network namespace -------------------------------------------------------

def links(kind=None):
    """{name: ifindex} of the calling thread's namespace, of one kind (veth, bridge)."""
    with pyroute2.IPRoute() as ip:
        found = {}
        for link in ip.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            if kind is None or (info is not None and info.get_attr("IFLA_INFO_KIND") == kind):
                found[link.get_attr("IFLA_IFNAME")] = link["index"]
        return found


def host_leftovers():
    return sorted(n for _, n in socket.if_nameindex() if n.startswith(PREFIX))


def private_netns(test):
    """Run the test body in a thread of its own network namespace; afterwards no veth may
    be left in it (nor, in the real host namespace, any interface named with PREFIX)."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        outcome = {}

        def body():
            try:
                _core.unshare_thread(CLONE_NEWNET)
                test(*args, **kwargs)
                left = settle(lambda: links("veth"))
                assert not left, f"veths left behind: {left}"
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=body)
        thread.start()
        thread.join()
        assert not host_leftovers(), f"host interfaces left: {host_leftovers()}"
        if "error" in outcome:
            raise outcome["error"]
    return wrapper


def make_link(name, kind="bridge"):
    """An interface that is up; kind "plain": one that is not a bridge (dummy, or ifb on
    kernels built without dummy)."""
    with pyroute2.IPRoute() as ip:
        for k in (("dummy", "ifb") if kind == "plain" else (kind,)):
            try:
                ip.link("add", ifname=name, kind=k)
                break
            except pyroute2.NetlinkError as exc:
                if exc.code != errno.EOPNOTSUPP or k == "ifb":
                    raise
        ip.link("set", index=ip.link_lookup(ifname=name)[0], state="up")
    return name


def veth(cidr, bridge="pctbr0", **kw):
    return pc.Network("veth", bridge=bridge, address=cidr, host_name=f"{PREFIX}*", **kw)


def ns_path():
    """A path of the calling thread's network namespace."""
    return f"/proc/{os.getpid()}/task/{threading.get_native_id()}/ns/net"


def threads_in_other_netns():
    """{(thread id, netns)} of our threads in a network namespace that is neither the
    host's nor the calling thread's."""
    allowed = {os.readlink("/proc/self/ns/net"), os.readlink(ns_path())}
    found = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            ns = os.readlink(f"/proc/self/task/{tid}/ns/net")
        except OSError:
            continue
        if ns not in allowed:
            found.add((tid, ns))
    return found


def state_of(factory, cid):
    with open(os.path.join(factory.root, cid, "state.json")) as f:
        return json.load(f)


@pytest.fixture
def box_config(busybox_rootfs):
    def make(*networks, **kw):
        return pc.Config(rootfs=busybox_rootfs, networks=networks, **kw)
    return make


# --- traffic ----------------------------------------------------------------------------

@pytest.mark.parametrize("server,client", [("10.88.0.2/24", "10.88.0.3/24"),
                                           ("fd00:88::2/64", "fd00:88::3/64")])
@private_netns
def test_two_containers_exchange_tcp(factory, box_config, server, client):
    make_link("pctbr0")
    a = factory.create("a", box_config(veth(server)))
    b = factory.create("b", box_config(veth(client)))
    try:
        a.start(pc.ProcessConfig(args=["sleep", "1000"]))
        b.start(pc.ProcessConfig(args=["sleep", "1000"]))
        size = 300_000
        # The server joins a's namespaces; the byte count it got comes back to us. Its
        # stdin stays open until the end: busybox nc shuts its sending side down at EOF
        # on stdin, and the client then stops as soon as it sees that.
        r, w = os.pipe()
        stdin_r, stdin_w = os.pipe()
        try:
            _, served = a.start(pc.ProcessConfig(
                args=["sh", "-c", "nc -l -p 5000 | wc -c"], stdin=stdin_r, stdout=w))
        finally:
            os.close(w)
            os.close(stdin_r)
        sh_ok(a, "i=0; until netstat -ltn | grep -q ':5000 '; do "
                 "i=$((i+1)); [ $i -lt 200 ] || exit 1; sleep 0.05; done")
        addr = server.split("/")[0]
        sh_ok(b, f"head -c {size} /dev/zero | nc {addr} 5000")
        [received] = read_pipes([r])
        os.close(stdin_w)
        assert served.get(timeout=10) == 0
        assert int(received) == size

        def counters(c):
            st = c.stats()
            return ({i.name: i for i in st.interfaces}, st.host_interfaces)

        a_in, [a_host] = counters(a)
        b_in, [b_host] = counters(b)
        assert set(a_in) == {"lo", "eth0"} and set(b_in) == {"lo", "eth0"}
        assert a_in["eth0"].rx_bytes >= size and a_in["eth0"].rx_packets > 0
        assert b_in["eth0"].tx_bytes >= size and b_in["eth0"].tx_packets > 0
        # The host ends, from the container's point of view: they count what eth0 counts.
        assert a_host.name.startswith(PREFIX) and len(a_host.name) == 15
        assert a_host.rx_bytes >= size and b_host.tx_bytes >= size
        assert a_host.rx_bytes == a_in["eth0"].rx_bytes
        assert b_host.tx_bytes == b_in["eth0"].tx_bytes
        for i in (a_in["eth0"], b_in["eth0"], a_host, b_host):
            assert i.rx_errors == i.tx_errors == 0
    finally:
        a.destroy()
        b.destroy()
    assert "pctbr0" in links("bridge")


# --- what the container gets ------------------------------------------------------------

@private_netns
def test_interface_settings_inside(factory, box_config):
    make_link("pctbr0")
    net = pc.Network("veth", name="net0", host_name="pctfixed0", bridge="pctbr0",
                     address=["10.89.0.2/24", "fd00:89::2/64"],
                     gateway=["10.89.0.1", "fd00:89::1"], mtu=1400, mac="02:00:00:00:89:02")
    c = factory.create("c", box_config(net, sysctl={"net.ipv4.ip_forward": "1"}))
    try:
        out = sh_ok(c, "ip -o link; ip -o addr; ip route; ip -6 route; "
                       "cat /proc/sys/net/ipv4/ip_forward; ls /proc/self/fd")
        assert "1: lo: <LOOPBACK,UP,LOWER_UP>" in out
        assert "net0@" in out and "mtu 1400" in out and "02:00:00:00:89:02" in out
        assert "inet 10.89.0.2/24" in out and "inet6 fd00:89::2/64" in out
        assert "tentative" not in out.split("fd00:89::2")[1].split("\n")[0]
        assert "default via 10.89.0.1 dev net0" in out
        assert "default via fd00:89::1 dev net0" in out
        assert out.split()[-5:] == ["1", "0", "1", "2", "3"]   # only stdio (and ls's dir)
        host = links("veth")
        assert list(host) == ["pctfixed0"]
        with pyroute2.IPRoute() as ip:
            link = ip.get_links(host["pctfixed0"])[0]
            assert link.get_attr("IFLA_MTU") == 1400
            assert link.get_attr("IFLA_MASTER") == links("bridge")["pctbr0"]
            assert link.get_attr("IFLA_OPERSTATE") == "UP"
        record = state_of(factory, "c")
        assert record["extra"]["veths"] == [{"name": "pctfixed0",
                                             "ifindex": host["pctfixed0"]}]
        # A new init after the first exited: a fresh namespace and veth, same fixed name
        # (the old one is deleted at once, not whenever the kernel gets to it).
        out2 = sh_ok(c, "ip -o addr show net0")
        assert "10.89.0.2/24" in out2
        assert list(links("veth")) == ["pctfixed0"]
        assert state_of(factory, "c")["extra"]["veths"][0]["ifindex"] != host["pctfixed0"]
    finally:
        c.destroy()
    assert links("veth") == {}
    assert "pctbr0" in links("bridge")


@private_netns
def test_loopback_only_and_veth_without_bridge(factory, box_config):
    c = factory.create("c", box_config(pc.Network("loopback"),
                                       pc.Network("veth", host_name="pctnobr*",
                                                  address="192.168.240.2/30")))
    try:
        c.start(pc.ProcessConfig(args=["sleep", "1000"]))
        out = sh_ok(c, "ip -o link; ping -c 1 -W 2 127.0.0.1 >/dev/null && echo lo-ok")
        assert "lo-ok" in out and "eth0@" in out
        [name] = links("veth")
        assert name.startswith("pctnobr") and len(name) == 15
        with pyroute2.IPRoute() as ip:
            assert ip.get_links(links("veth")[name])[0].get_attr("IFLA_MASTER") is None
    finally:
        c.destroy()


@private_netns
def test_destroy_from_another_process(factory, box_config):
    make_link("pctbr0")
    c = factory.create("c", box_config(veth("10.90.0.2/24")))
    c.start(pc.ProcessConfig(args=["sleep", "1000"]))
    assert len(links("veth")) == 1
    # The subprocess is forked from this thread: it is in this namespace too.
    subprocess.run([sys.executable, "-c", "import sys, pycontainer as pc; "
                    "pc.Factory(root=sys.argv[1]).load('c').destroy()", factory.root],
                   cwd=REPO, check=True, timeout=60)
    assert links("veth") == {}
    assert "pctbr0" in links("bridge")
    c.destroy()


# --- namespaces joined by path ----------------------------------------------------------

@private_netns
def test_join_netns_by_path(factory, busybox_rootfs):
    make_link("pctdummy0", kind="plain")
    path = ns_path()
    c = factory.create("c", pc.Config(rootfs=busybox_rootfs,
                                      namespaces={"mount": None, "pid": None, "uts": None,
                                                  "ipc": None, "net": path}))
    assert c.config.namespace_paths == {"net": path}
    assert c.config.namespaces == ("mount", "pid", "uts", "ipc", "net")
    try:
        pid, _ = c.start(pc.ProcessConfig(args=["sleep", "1000"]))
        assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink(path)
        assert os.readlink(f"/proc/{pid}/ns/uts") != os.readlink("/proc/self/ns/uts")
        # A joined process is in it too; the container sees this namespace's interfaces.
        out = sh_ok(c, "cat /proc/net/dev; ls /proc/self/fd")
        assert "pctdummy0:" in out and "lo:" in out
        assert out.split()[-4:] == ["0", "1", "2", "3"]
        assert {i.name for i in c.stats().interfaces} == set(links())
        assert c.stats().host_interfaces == []
        # The record keeps the path; a Factory in another process loads it.
        assert state_of(factory, "c")["config"]["namespace_paths"] == {"net": path}
        again = pc.Factory(root=factory.root).load("c")
        assert again.config == c.config
    finally:
        c.destroy()
    assert "pctdummy0" in links()


@private_netns
def test_join_netns_by_path_from_a_user_namespace(factory):
    """With a new user namespace the helper joins the path (the init, inside the user
    namespace, has no rights over a namespace of the host's)."""
    make_link("pctdummy0", kind="plain")
    c = factory.create("c", pc.Config(
        namespaces={"user": None, "mount": None, "pid": None, "uts": None, "ipc": None,
                    "net": ns_path()},
        uid_mappings=[pc.security.IdMap(0, 100000, 65536)],
        gid_mappings=[pc.security.IdMap(0, 100000, 65536)]))
    try:
        pid, _ = c.start(pc.ProcessConfig(args=["sleep", "1000"]))
        assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink(ns_path())
        assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
        out = sh_ok(c, "id -u; cat /proc/net/dev")
        assert out.startswith("0\n") and "pctdummy0:" in out
    finally:
        c.destroy()


def test_join_uts_ipc_and_cgroup_by_path(factory, busybox_rootfs):
    first = factory.create("first", pc.Config(
        rootfs=busybox_rootfs, hostname="first",
        namespaces=("mount", "pid", "uts", "ipc", "net", "cgroup")))
    try:
        pid, _ = first.start(pc.ProcessConfig(args=["sleep", "1000"]))
        second = factory.create("second", pc.Config(
            rootfs=busybox_rootfs,
            namespaces={"mount": None, "pid": None, "net": None,
                        "uts": f"/proc/{pid}/ns/uts", "ipc": f"/proc/{pid}/ns/ipc",
                        "cgroup": f"/proc/{pid}/ns/cgroup"}))
        try:
            spid, _ = second.start(pc.ProcessConfig(args=["sleep", "1000"]))
            for ns in ("uts", "ipc", "cgroup"):
                assert os.readlink(f"/proc/{spid}/ns/{ns}") == os.readlink(f"/proc/{pid}/ns/{ns}")
            assert os.readlink(f"/proc/{spid}/ns/net") != os.readlink(f"/proc/{pid}/ns/net")
            assert sh_ok(second, "hostname").strip() == "first"
            # Placed in its own cgroup first, then in first's cgroup namespace: its cgroup
            # is outside that namespace's root, so paths are relative to it ("/..").
            assert "/.." in sh_ok(second, "cat /proc/self/cgroup")
            assert spid in second.processes() and spid not in first.processes()
        finally:
            second.destroy()
    finally:
        first.destroy()


def test_namespace_file_gone_after_create(factory, busybox_rootfs):
    """Checked at create; gone by start: start fails naming it, load still works."""
    ready, done = threading.Event(), threading.Event()
    holder = {}

    def pin():
        _core.unshare_thread(CLONE_NEWNET)
        holder["path"] = ns_path()
        ready.set()
        done.wait(30)

    t = threading.Thread(target=pin)
    t.start()
    ready.wait(10)
    try:
        c = factory.create("c", pc.Config(rootfs=busybox_rootfs,
                                          namespaces={"mount": None, "pid": None,
                                                      "net": holder["path"]}))
    finally:
        done.set()
        t.join()
    assert not settle(lambda: os.path.exists(holder["path"]))    # the task is gone
    with pytest.raises(pc.ContainerSystemError) as ei:
        c.start(pc.ProcessConfig(args=["true"]))
    assert ei.value.errno == errno.ENOENT and "namespaces.net" in str(ei.value)
    loaded = pc.Factory(root=factory.root).load("c")     # no ConfigInvalidError
    assert loaded.run_state() == pc.RunState.CREATED
    loaded.destroy()


def test_setns_failure_reports_the_stage(factory, busybox_rootfs, tmp_path):
    """A namespace path that names a file of the wrong type by start (create checked it
    then) fails in the child at stage setns, and leaves nothing behind."""
    link = str(tmp_path / "netns")
    os.symlink("/proc/self/ns/net", link)
    c = factory.create("c", pc.Config(rootfs=busybox_rootfs, namespace_paths={"net": link}))
    os.unlink(link)
    os.symlink("/proc/self/ns/ipc", link)
    with pytest.raises(pc.ContainerSystemError) as ei:
        c.start(pc.ProcessConfig(args=["true"]))
    assert ei.value.stage == "setns" and ei.value.errno == errno.EINVAL
    assert f"namespaces.net {link}" in str(ei.value)
    assert c.run_state() == pc.RunState.CREATED and c.processes() == []
    c.destroy()


# --- failure paths leave nothing behind -------------------------------------------------

def _assert_unchanged(factory, c, record, threads_before):
    assert c.run_state() == pc.RunState.CREATED
    assert c.processes() == []
    assert state_of(factory, c.id) == record
    assert links("veth") == {}
    # No thread left in the namespace the setup made: it ends with the setup. (The exit
    # watcher thread stays in the namespace of the thread that first started a
    # container, which may have been an earlier test's: hence the `before`.)
    assert settle(lambda: threads_in_other_netns() - threads_before) == set()


@pytest.mark.parametrize("case", ["no such bridge", "not a bridge", "host name in use",
                                  "second veth fails", "exec fails"])
@private_netns
def test_failed_start_leaves_nothing(factory, box_config, case):
    make_link("pctbr0")
    make_link("pctdummy0", kind="plain")
    nets = [veth("10.91.0.2/24")]
    process = pc.ProcessConfig(args=["sleep", "1000"])
    if case == "no such bridge":
        nets = [veth("10.91.0.2/24", bridge="pctnope")]
        expected = (errno.ENODEV, "networks[0].bridge 'pctnope'")
    elif case == "not a bridge":
        nets = [veth("10.91.0.2/24", bridge="pctdummy0")]
        expected = (errno.EINVAL, "networks[0].bridge 'pctdummy0' is not a bridge")
    elif case == "host name in use":
        nets = [pc.Network("veth", host_name="pctdummy0", address="10.91.0.2/24")]
        expected = (errno.EEXIST, "networks[0].host_name 'pctdummy0'")
    elif case == "second veth fails":
        nets = [veth("10.91.0.2/24"), pc.Network("veth", name="eth1", bridge="pctnope")]
        expected = (errno.ENODEV, "networks[1].bridge 'pctnope'")
    else:
        process = pc.ProcessConfig(args=["/bin/nope"])
        expected = (errno.ENOENT, "exec: /bin/nope")
    c = factory.create("c", box_config(*nets))
    record = state_of(factory, "c")
    threads_before = threads_in_other_netns()
    for _ in range(3):            # and again: nothing accumulates
        with pytest.raises(pc.ContainerSystemError) as ei:
            c.start(process)
        assert ei.value.errno == expected[0] and expected[1] in str(ei.value), str(ei.value)
        _assert_unchanged(factory, c, record, threads_before)
    # What was there before is still there: the bridge, and the interface that had the name.
    assert "pctbr0" in links("bridge") and "pctdummy0" in links()
    c.destroy()


def test_without_pyroute2_create_says_what_to_install(factory, busybox_rootfs, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyroute2", None)     # as if it were not installed
    with pytest.raises(pc.ContainerSystemError) as ei:
        factory.create("c", pc.Config(rootfs=busybox_rootfs, networks=[pc.Network("veth")]))
    assert ei.value.errno == errno.ENOPKG and "pycontainer-runtime[network]" in str(ei.value)
    assert factory.list() == []
    # Without a veth it is not needed.
    factory.create("c", pc.Config(rootfs=busybox_rootfs,
                                  networks=[pc.Network("loopback")])).destroy()
