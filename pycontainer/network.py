"""Veth networks: a new init's network namespace, made and configured before it runs.

Everything goes through netlink (pyroute2, imported only when a Config has a veth), in a
short-lived thread of its own, for two reasons: that thread can unshare(CLONE_NEWNET)
without moving any other thread of the program, and a netlink socket belongs to the
namespace of the thread that made it, so a socket made after the unshare configures the
new namespace; and pyroute2's synchronous API runs an event loop, which it cannot do in a
thread that already runs one (a caller inside asyncio).

The namespace is pinned by a descriptor of /proc/thread-self/ns/net that the init joins
with setns (csrc/spawn.c, the same path as a Config that names a namespace by path). Each
veth is made in one request with its container end already inside that namespace, under
its final name: no moment where it sits in the host's namespace, and no clash with a host
interface of the same name (the host has an eth0 too). A veth dies with the namespace of
either end, so if this process dies mid-way the kernel removes what it made; teardown()
removes them at once, so that a destroy or a failed start leaves nothing behind when it
returns.
"""
from __future__ import annotations

import errno
import importlib.util
import ipaddress
import os
import secrets
import socket
import threading

from . import _core, namespaces
from .errors import ContainerSystemError

_CLONE_NEWNET = namespaces.BY_NAME["net"].clone_flag
_IFA_F_NODAD = 0x02
_IFNAME_MAX = 15
_NAME_TRIES = 8
_MISSING = "veth networks need pyroute2: pip install 'pycontainer-runtime[network]'"


def check_available():
    """Fail early (at create) when pyroute2 is missing, without importing it yet."""
    if importlib.util.find_spec("pyroute2") is None:
        raise ContainerSystemError(errno.ENOPKG, _MISSING)


def _pyroute2():
    try:
        import pyroute2          # lazily: optional, and only a veth needs it
    except ImportError:
        raise ContainerSystemError(errno.ENOPKG, _MISSING) from None
    return pyroute2


def _in_thread(fn, *args, undo=None):
    """fn(*args) in a new thread; its result, or its exception raised here. Interrupted
    while waiting (KeyboardInterrupt), it lets fn finish and passes its result to undo."""
    result = {}

    def run():
        try:
            result["value"] = fn(*args)
        except BaseException as exc:  # noqa: B902 - handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=run, name="pycontainer-network", daemon=True)
    thread.start()
    try:
        thread.join()
    except BaseException:
        thread.join()
        if "value" in result and undo is not None:
            undo(result["value"])
        raise
    if "error" in result:
        raise result["error"]
    return result["value"]


def _undo(made):
    ns_fd, veths = made
    try:
        teardown(veths)
    finally:
        os.close(ns_fd)


class _Netlink:
    """Netlink calls whose failures are ContainerSystemErrors naming what they were for."""

    def __init__(self, pyroute2):
        self.iproute = pyroute2.IPRoute()
        self._error = pyroute2.NetlinkError

    def __call__(self, what, method, *args, **kw):
        try:
            return getattr(self.iproute, method)(*args, **kw)
        except self._error as exc:
            raise ContainerSystemError(exc.code or errno.EIO, what) from None

    def index(self, name):
        found = self.iproute.link_lookup(ifname=name)
        return found[0] if found else None

    def close(self):
        self.iproute.close()


def setup(networks):
    """A new network namespace with `lo` up and a veth for every veth entry of
    `networks` (a Config's). Returns (ns_fd, veths): a close-on-exec descriptor of the
    namespace, which the caller closes, and [{"name", "ifindex"}] of the host ends, for
    teardown(). On failure nothing is left: no veth, no namespace, no descriptor."""
    return _in_thread(_setup, _pyroute2(), networks, undo=_undo)


def teardown(veths):
    """Delete the host ends of `veths` (setup()'s list) that still exist; a veth that is
    gone (its namespace died) or whose name is now another interface's is left alone."""
    if veths:
        _in_thread(_teardown, _pyroute2(), veths)


def _setup(pyroute2, networks):
    host = _Netlink(pyroute2)            # made before the unshare: in the host namespace
    ns = None
    ns_fd = -1
    made = []
    try:
        _core.unshare_thread(_CLONE_NEWNET)    # this thread only; it ends with the setup
        ns_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        ns = _Netlink(pyroute2)
        ns("lo", "link", "set", index=ns.index("lo"), state="up")
        for i, net in enumerate(networks):
            if net.type == "veth":
                _add_veth(host, ns, ns_fd, net, f"networks[{i}]", made)
        return ns_fd, made
    except BaseException:
        try:
            _delete(host, made)
        finally:
            if ns_fd >= 0:
                os.close(ns_fd)
        raise
    finally:
        if ns is not None:
            ns.close()
        host.close()


def _add_veth(host, ns, ns_fd, net, where, made):
    master = None
    if net.bridge is not None:
        what = f"{where}.bridge {net.bridge!r}"
        master = host.index(net.bridge)
        if master is None:
            raise ContainerSystemError(errno.ENODEV, what)
        info = host(what, "link", "get", index=master)[0].get_attr("IFLA_LINKINFO")
        if info is None or info.get_attr("IFLA_INFO_KIND") != "bridge":
            raise ContainerSystemError(errno.EINVAL, f"{what} is not a bridge")
    peer = {"ifname": net.name, "net_ns_fd": ns_fd}
    mtu = {"mtu": net.mtu} if net.mtu else {}
    peer.update(mtu)
    if net.mac:
        peer["address"] = net.mac
    name = _create(host, net, where, peer, mtu)
    made.append({"name": name, "ifindex": host.index(name)})
    host(f"{where}.host_name {name!r}", "link", "set", index=made[-1]["ifindex"],
         state="up", **({"master": master} if master else {}))

    what = f"{where}.name {net.name!r} in the container"
    index = ns.index(net.name)
    for cidr in net.address:
        iface = ipaddress.ip_interface(cidr)
        # No duplicate address detection: the runtime assigns these addresses, and DAD
        # would keep an IPv6 one unusable ("tentative") for a second or two after start.
        ns(f"{where}.address {cidr}", "addr", "add", index=index, address=str(iface.ip),
           prefixlen=iface.network.prefixlen,
           flags=_IFA_F_NODAD if iface.version == 6 else 0)
    ns(what, "link", "set", index=index, state="up")
    for gateway in net.gateway:
        v6 = ipaddress.ip_address(gateway).version == 6
        ns(f"{where}.gateway {gateway}", "route", "add", dst="::/0" if v6 else "0.0.0.0/0",
           gateway=gateway, oif=index, family=socket.AF_INET6 if v6 else socket.AF_INET)


def _create(host, net, where, peer, mtu):
    """Make the pair; a generated host name that is taken is drawn again."""
    prefix = net.host_name[:-1] if net.host_name.endswith("*") else None
    for _ in range(_NAME_TRIES if prefix is not None else 1):
        name = net.host_name if prefix is None else \
            prefix + secrets.token_hex(8)[:_IFNAME_MAX - len(prefix)]
        try:
            host(f"{where}.host_name {name!r}", "link", "add", ifname=name, kind="veth",
                 peer=peer, **mtu)
            return name
        except ContainerSystemError as exc:
            if exc.errno != errno.EEXIST or prefix is None:
                raise
    raise ContainerSystemError(errno.EEXIST, f"{where}.host_name {net.host_name!r}: "
                               f"{_NAME_TRIES} generated names were taken")


def _teardown(pyroute2, veths):
    host = _Netlink(pyroute2)
    try:
        _delete(host, veths)
    finally:
        host.close()


def _delete(host, veths):
    """Delete each veth by its host end (the other end goes with it); ENODEV is fine."""
    for veth in veths:
        if host.index(veth["name"]) != veth["ifindex"]:
            continue             # gone, or the name is someone else's now
        try:
            host(f"veth {veth['name']!r}", "link", "del", index=veth["ifindex"])
        except ContainerSystemError as exc:
            if exc.errno != errno.ENODEV:
                raise
