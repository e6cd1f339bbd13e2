"""config.json (OCI runtime-spec 1.x: oci.version) <-> Config and ProcessConfig.

Pure translation: nothing here reads a file or asks the host. ``parse_spec(doc, dir)``
turns a bundle's decoded config.json into a ``Bundle``: the container's ``Config``, the
``ProcessConfig`` of its init, hooks, annotations and the warnings about what was accepted
but not applied. ``to_oci(config, process)`` is the reverse and ``default_spec()`` what
``pycontainer spec`` writes (runc's ``runc spec``, adapted to what pycontainer supports).
Reading config.json and what only the host can answer (is root.path a directory, can
this host weight block I/O or limit huge pages) are the runtime's: oci.runtime.

Every field of the spec is known here. A field that is unknown, of the wrong type or that
pycontainer cannot honour is a ``SpecError`` naming its JSON path; a field it accepts
without applying (``linux.mountLabel``, a mount the runtime always makes itself with other
options) is a warning in ``Bundle.warnings``, never dropped silently.

What maps where:

- ``process``: args, env, cwd and user go to the init's ProcessConfig, and env and cwd
  also become the Config's defaults (what ``exec`` inherits, as runc's exec does);
  capabilities, rlimits, noNewPrivileges, oomScoreAdj and user.umask are the Config's
  (pycontainer applies them to every process of the container).
- ``root.path`` is relative to the bundle; the host's ``/`` (read-only) is the built-in
  host image, ``Config(rootfs=None)``.
- ``mounts``: every entry is mounted in the order listed, /proc, /sys and /dev included
  (``Config.default_mounts`` False: pycontainer adds none of its own but the default
  device nodes and /dev links); errors name config.json's index. A cgroup mount is not
  supported (warning: not mounted).
- ``linux.cgroupsPath`` is the container's cgroup exactly (Config's cgroup_path), as
  runc and crun take it: "/a/b/c" from each hierarchy's root, "a/b/c" below the
  runtime's own cgroup. It must not exist yet (another container's is refused). The
  systemd form "slice:prefix:name" is refused: pycontainer manages cgroupfs directly.
- ``linux.namespaces``: without a path each is a new namespace; with a path the container
  joins it (any but user: Config.namespace_paths); no "pid" entry shares the caller's pid
  namespace. A joined mount namespace is used as it is (mounts and root.readonly are not
  applied, with a warning).
"""
from __future__ import annotations

import json
import os
import re
import signal
from dataclasses import dataclass, field
from typing import Optional

from .. import namespaces
from ..config import (JOINABLE_NAMESPACES, Config, Mount, MOUNT_FLAGS, ProcessConfig,
                      Resources)
from ..devices import DEFAULT_RULES, DeviceRule
from ..errors import ConfigInvalidError
from ..security import (CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS,
                        RLIM_INFINITY, RLIMITS, Capabilities, Device, IdMap, Rlimit,
                        check_sysctl)
from . import reader as r
from .hooks import Hooks, hooks_to_oci, parse_hooks
from .reader import MISSING, SpecError
from .version import OCI_VERSION, WRITTEN_VERSION, check_version

__all__ = ["Bundle", "ProcessSpec", "parse_spec", "parse_process", "builtin_bundle",
           "to_oci", "default_spec", "resources_from_oci", "page_size_kb",
           "OCI_NAMESPACE_TYPES", "SpecError"]

PDEATHSIG_ANNOTATION = "org.pycontainer.pdeathsig"

# Library namespace name -> its OCI type ("net" -> "network"), from the one table.
OCI_NAMESPACE_TYPES = {ns.name: ns.oci for ns in namespaces.TABLE}
# OCI type -> library name; "time" is a type the spec knows and we refuse by name.
_OCI_NS = {**{ns.oci: ns.name for ns in namespaces.TABLE}, "time": "time"}

_TOP = {"ociVersion", "process", "root", "hostname", "domainname", "mounts", "hooks",
        "annotations", "linux", "solaris", "windows", "vm", "zos"}
_PROCESS = {"terminal", "consoleSize", "user", "args", "commandLine", "env", "cwd",
            "capabilities", "rlimits", "noNewPrivileges", "apparmorProfile", "oomScoreAdj",
            "scheduler", "selinuxLabel", "ioPriority", "execCPUAffinity"}
_USER = {"uid", "gid", "umask", "additionalGids", "username"}
_CAP_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")
_LINUX = {"uidMappings", "gidMappings", "sysctl", "resources", "cgroupsPath", "namespaces",
          "devices", "seccomp", "rootfsPropagation", "maskedPaths", "readonlyPaths",
          "mountLabel", "intelRdt", "personality", "timeOffsets", "netDevices",
          "memoryPolicy"}
_RESOURCES = {"devices", "memory", "cpu", "pids", "blockIO", "hugepageLimits", "network",
              "rdma", "unified"}
_MEMORY = {"limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness",
           "disableOOMKiller", "useHierarchy", "checkBeforeUpdate"}
_CPU = {"shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "cpus",
        "mems", "idle"}
_BLOCKIO = {"weight", "leafWeight", "weightDevice", "throttleReadBpsDevice",
            "throttleWriteBpsDevice", "throttleReadIOPSDevice", "throttleWriteIOPSDevice"}

# What pycontainer mounts itself in a library Config's container (Config.default_mounts,
# csrc/rootfs.c), as (type, options): what a config.json written for it lists. A
# config.json's own mounts are all its container gets, in its order.
BUILTIN_MOUNTS = {
    "/proc": ("proc", ("nosuid", "noexec", "nodev")),
    "/dev": ("tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
    "/dev/pts": ("devpts", ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                            "gid=5")),
    "/dev/shm": ("tmpfs", ("nosuid", "noexec", "nodev", "mode=1777", "size=65536k")),
    "/dev/mqueue": ("mqueue", ("nosuid", "noexec", "nodev")),
    "/sys": ("sysfs", ("nosuid", "noexec", "nodev", "ro")),
}
# The device nodes every container gets (csrc/rootfs.c default_nodes).
_BUILTIN_NODES = {"/dev/null": (1, 3), "/dev/zero": (1, 5), "/dev/full": (1, 7),
                  "/dev/random": (1, 8), "/dev/urandom": (1, 9), "/dev/tty": (5, 0)}
_RECURSIVE_OPTIONS = {"r" + o for o in ("ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec",
                                        "exec", "nodiratime", "diratime", "relatime",
                                        "norelatime", "noatime", "atime", "strictatime",
                                        "nostrictatime", "nosymfollow", "symfollow")}
_UNSUPPORTED_OPTIONS = {"nosymfollow", "symfollow", "idmap", "ridmap", "tmpcopyup", "remount",
                        "lazytime", "nolazytime", "mand", "nomand", "iversion", "noiversion",
                        "loud", "silent", "nostrictatime", "copy-symlink", "notmpcopyup"}


@dataclass(frozen=True)
class ProcessSpec:
    """An OCI ``process`` object, parsed. ``config_fields`` are the parts pycontainer keeps
    per container (Config fields) rather than per process."""

    args: tuple
    env: tuple
    cwd: str
    uid: int = 0
    gid: int = 0
    additional_gids: tuple = ()
    terminal: bool = False
    console_size: Optional[tuple] = None     # (height, width)
    capabilities: Optional[Capabilities] = None
    rlimits: tuple = ()
    no_new_privileges: bool = False
    oom_score_adj: Optional[int] = None
    umask: int = 0o022

    @property
    def user(self):
        if self.uid == 0 and self.gid == 0:
            return None
        return str(self.uid) if self.gid == 0 else f"{self.uid}:{self.gid}"

    def process_config(self, **stdio):
        """The ProcessConfig that runs this process in a container whose Config has these
        env and cwd (as load_bundle makes it: env and cwd None, inherited)."""
        return ProcessConfig(args=self.args, user=self.user,
                             additional_gids=self.additional_gids, **stdio)


@dataclass
class Bundle:
    path: str                       # the bundle directory, absolute
    config: Config
    process: Optional[ProcessConfig]   # the init's; None when config.json has no process
    process_spec: Optional[ProcessSpec]
    hooks: Hooks = field(default_factory=Hooks)
    annotations: dict = field(default_factory=dict)
    oci_version: str = OCI_VERSION
    rootfs: str = "/"               # root.path resolved; "/" for the host image
    warnings: list = field(default_factory=list)

    @property
    def terminal(self):
        return bool(self.process_spec and self.process_spec.terminal)


# --- reading ------------------------------------------------------------------------------

def builtin_bundle(bundle_dir, args=None):
    """What `run` uses in a directory without config.json: the library's defaults (the
    host's root read-only, locked down) running `args` (default: sh)."""
    config = Config()
    spec = ProcessSpec(args=tuple(args or ("sh",)), env=config.env, cwd=config.cwd)
    return Bundle(path=os.path.abspath(bundle_dir), config=config,
                  process=spec.process_config(), process_spec=spec, rootfs="/")


def parse_spec(doc, bundle_dir, args=None):
    """A config.json document (already decoded) -> Bundle."""
    warnings = []
    d = r.obj(doc, "", _TOP, required=("ociVersion",))
    version = check_version(r.string(d, "", "ociVersion"))
    for other in ("solaris", "windows", "vm", "zos"):
        if d.get(other) is not None:
            r.fail(other, d[other], "not a Linux container configuration")
    linux = r.obj(d.get("linux") or {}, "linux", _LINUX)

    kw = {}
    process_spec = None
    if d.get("process") is not None or args:
        process_spec = parse_process(d.get("process") or {"cwd": "/", "args": list(args)},
                                     "process", warnings, args_override=args)
        ps = process_spec
        kw.update(env=ps.env, cwd=ps.cwd, capabilities=ps.capabilities, rlimits=ps.rlimits,
                  no_new_privileges=ps.no_new_privileges, oom_score_adj=ps.oom_score_adj,
                  umask=ps.umask)
    else:
        kw.update(capabilities=None, no_new_privileges=False)

    rootfs, readonly = _root(d, bundle_dir)
    kw.update(rootfs=None if rootfs == "/" else rootfs, readonly_rootfs=readonly)
    for name in ("hostname", "domainname"):
        value = r.string(d, "", name, "")
        kw[name] = value or None

    namespaces, ns_paths = _namespaces(linux)
    kw["namespaces"] = namespaces
    userns = "user" in namespaces
    kw["mounts"] = _mounts(r.array(d, "", "mounts", []), bundle_dir, userns, warnings)
    kw["default_mounts"] = False
    if "mount" in ns_paths:
        # A joined mount namespace is used as it is: what would change it is not applied.
        for key, unset in (("mounts", ()), ("readonly_rootfs", False)):
            if kw[key] != unset:
                warnings.append(f"{'root.readonly' if key == 'readonly_rootfs' else key}: "
                                "not applied: the container joins an existing mount "
                                "namespace, which it uses as it is")
                kw[key] = unset
    hooks = parse_hooks(d.get("hooks"))
    annotations = r.mapping(d, "", "annotations")
    if PDEATHSIG_ANNOTATION in annotations:
        kw["pdeathsig"] = _signal(annotations[PDEATHSIG_ANNOTATION],
                                  f"annotations.{PDEATHSIG_ANNOTATION}")
    _linux(linux, kw, namespaces, warnings)
    kw.setdefault("masked_paths", ())
    kw.setdefault("readonly_paths", ())
    kw.setdefault("seccomp", None)
    kw["namespace_paths"] = ns_paths
    config = _build_config(kw)

    process = process_spec.process_config() if process_spec else None
    return Bundle(path=os.path.abspath(bundle_dir), config=config, process=process,
                  process_spec=process_spec, hooks=hooks, annotations=annotations,
                  oci_version=version, rootfs=rootfs, warnings=warnings)


# Library field -> JSON path, for the few checks only Config itself makes.
_CONFIG_FIELDS = {
    "rootfs": "root.path", "hostname": "hostname", "domainname": "domainname",
    "namespaces": "linux.namespaces", "env": "process.env", "cwd": "process.cwd",
    "cgroup_parent": "linux.cgroupsPath", "cgroup_path": "linux.cgroupsPath",
    "uid_mappings": "linux.uidMappings",
    "gid_mappings": "linux.gidMappings", "capabilities": "process.capabilities",
    "capabilities.ambient": "process.capabilities.ambient", "umask": "process.user.umask",
    "oom_score_adj": "process.oomScoreAdj", "sysctl": "linux.sysctl",
    "pdeathsig": f"annotations.{PDEATHSIG_ANNOTATION}",
}


def _build_config(kw):
    try:
        return Config(**kw)
    except SpecError:
        raise
    except ConfigInvalidError as exc:
        name = exc.field or ""
        where = _CONFIG_FIELDS.get(name) or _CONFIG_FIELDS.get(name.split("[")[0].split(".")[0])
        raise SpecError(where or "config.json", exc.value, exc.reason) from None


def _signal(value, where):
    text = value.strip().upper()
    if text.isdigit():
        num = int(text)
    else:
        name = text if text.startswith("SIG") else "SIG" + text
        num = getattr(signal, name, None)
        if not isinstance(num, int):
            r.fail(where, value, "expected a signal name or number")
        num = int(num)
    if not 1 <= num <= 64:
        r.fail(where, value, "expected a signal number 1..64")
    return num


def _root(d, bundle_dir):
    root = d.get("root", MISSING)
    if root is MISSING or root is None:
        r.fail("root", MISSING, "required field missing")
    root = r.obj(root, "root", {"path", "readonly"}, required=("path",))
    path = r.string(root, "root", "path", nonempty=True)
    readonly = r.boolean(root, "root", "readonly", False)
    full = os.path.normpath(os.path.join(bundle_dir, path))
    if full == "/":
        if not readonly:
            r.fail("root.readonly", readonly, "the host's root (\"/\") can only be the root "
                   "of a container read-only")
        return "/", False       # Config(rootfs=None) is the host image, always read-only
    return full, readonly


def parse_process(value, path="process", warnings=None, args_override=None):
    """An OCI process object -> ProcessSpec. Also what `exec --process` reads."""
    warnings = [] if warnings is None else warnings
    p = r.obj(value, path, _PROCESS, required=() if args_override else ("cwd",))
    terminal = r.boolean(p, path, "terminal", False)
    console = None
    if p.get("consoleSize") is not None:
        cpath = r.join(path, "consoleSize")
        box = r.obj(p["consoleSize"], cpath, {"height", "width"}, required=("height", "width"))
        console = (r.uint32(box, cpath, "height"), r.uint32(box, cpath, "width"))
    upath = r.join(path, "user")
    user = r.obj(p.get("user") or {}, upath, _USER)
    if user.get("username"):
        r.fail(r.join(upath, "username"), user["username"], "a Windows field: use uid and gid")
    uid = r.uint32(user, upath, "uid", 0)
    gid = r.uint32(user, upath, "gid", 0)
    umask = user.get("umask")
    umask = 0o022 if umask is None else r.integer(user, upath, "umask", lo=0, hi=0o777)
    gids = r.array(user, upath, "additionalGids", [])
    for i, g in enumerate(gids):
        if isinstance(g, bool) or not isinstance(g, int) or not 0 <= g <= 0xFFFFFFFE:
            r.fail(r.join(r.join(upath, "additionalGids"), i), g, "expected a gid 0..4294967294")
    if args_override:
        args = tuple(args_override)
    else:
        args = tuple(r.strings(p, path, "args", None) or ())
        if not args:
            r.fail(r.join(path, "args"), p.get("args", MISSING) if "args" in p else MISSING,
                   "required: at least the program to run")
    if not args[0]:
        r.fail(r.join(path, "args[0]"), args[0], "the program name is empty")
    if p.get("commandLine"):
        r.fail(r.join(path, "commandLine"), p["commandLine"], "a Windows field: use args")
    env = r.strings(p, path, "env", [])
    for i, item in enumerate(env):
        if "=" not in item or item.startswith("="):
            r.fail(r.join(r.join(path, "env"), i), item, "expected NAME=value")
    cwd = r.string(p, path, "cwd", "/", nonempty=True, absolute=True)
    caps = _capabilities(p, path, warnings)
    rlimits = _rlimits(p, path)
    nnp = r.boolean(p, path, "noNewPrivileges", False)
    oom = r.integer(p, path, "oomScoreAdj", None, lo=-1000, hi=1000)
    for name, what in (("apparmorProfile", "AppArmor"), ("selinuxLabel", "SELinux")):
        value_ = r.string(p, path, name, "")
        if value_:
            warnings.append(f"{r.join(path, name)}: ignored ({value_!r}): pycontainer has no "
                            f"{what} support; the container runs without a {what} label")
    for name, what in (("scheduler", "scheduling policies"), ("ioPriority", "I/O priorities"),
                       ("execCPUAffinity", "exec CPU affinity")):
        if p.get(name) not in (None, {}):
            r.fail(r.join(path, name), p[name], f"{what} are not supported")
    return ProcessSpec(args=args, env=tuple(env), cwd=cwd, uid=uid, gid=gid,
                       additional_gids=tuple(gids), terminal=terminal, console_size=console,
                       capabilities=caps, rlimits=rlimits, no_new_privileges=nnp,
                       oom_score_adj=oom, umask=umask)


def _capabilities(p, path, warnings):
    if p.get("capabilities") is None:
        return None        # the process keeps every capability (runc's reading)
    cpath = r.join(path, "capabilities")
    caps = r.obj(p["capabilities"], cpath, set(_CAP_SETS))
    sets = {}
    for name in _CAP_SETS:
        where = r.join(cpath, name)
        values = []
        for i, cap in enumerate(r.strings(caps, cpath, name, [])):
            norm = cap.upper()
            if norm not in CAPABILITIES:
                warnings.append(f"{r.join(where, i)}: unknown capability {cap!r} ignored")
                continue
            values.append(norm)
        sets[name] = tuple(values)
    allowed = set(sets["permitted"]) & set(sets["inheritable"])
    dropped = [c for c in sets["ambient"] if c not in allowed]
    if dropped:
        # runc tries to raise them and logs a warning when the kernel refuses.
        warnings.append(f"{cpath}.ambient: {', '.join(dropped)} not raised: an ambient "
                        "capability must also be permitted and inheritable")
        sets["ambient"] = tuple(c for c in sets["ambient"] if c in allowed)
    try:
        return Capabilities(**sets)
    except ConfigInvalidError as exc:
        raise r.from_library(cpath, exc, {f"capabilities.{s}": s for s in _CAP_SETS}) from None


def _rlimits(p, path):
    out = []
    seen = set()
    rpath = r.join(path, "rlimits")
    for i, item in enumerate(r.array(p, path, "rlimits", [])):
        where = r.join(rpath, i)
        d = r.obj(item, where, {"type", "hard", "soft"}, required=("type", "hard", "soft"))
        kind = r.string(d, where, "type")
        if kind not in RLIMITS:
            r.fail(r.join(where, "type"), kind, "unknown rlimit type")
        if kind in seen:
            r.fail(r.join(where, "type"), kind, "duplicate rlimit type")
        seen.add(kind)
        hard = r.uint64(d, where, "hard")
        soft = r.uint64(d, where, "soft")
        if soft > hard:
            r.fail(r.join(where, "soft"), soft, f"greater than the hard limit {hard}")
        out.append(Rlimit(kind, None if soft == RLIM_INFINITY else soft,
                          None if hard == RLIM_INFINITY else hard))
    return tuple(out)


def _namespaces(linux):
    names, paths = [], {}
    for i, item in enumerate(r.array(linux, "linux", "namespaces", [])):
        where = r.join("linux.namespaces", i)
        d = r.obj(item, where, {"type", "path"}, required=("type",))
        kind = r.string(d, where, "type")
        if kind not in _OCI_NS:
            r.fail(r.join(where, "type"), kind, f"unknown namespace type; expected one of "
                   f"{sorted(_OCI_NS)}")
        name = _OCI_NS[kind]
        if name == "time":
            r.fail(r.join(where, "type"), kind, "time namespaces are not supported")
        if name in names:
            r.fail(r.join(where, "type"), kind, "duplicate namespace type")
        ns_path = r.string(d, where, "path", "")
        if ns_path:
            if not ns_path.startswith("/"):
                r.fail(r.join(where, "path"), ns_path, "expected an absolute path")
            if name not in JOINABLE_NAMESPACES:
                r.fail(r.join(where, "path"), ns_path,
                       f"joining an existing {kind} namespace is not supported (only "
                       f"{', '.join(OCI_NAMESPACE_TYPES[n] for n in JOINABLE_NAMESPACES)})")
            paths[name] = ns_path
        names.append(name)
    if "mount" not in names:      # "pid" absent: the caller's (Kubernetes' hostPID)
        r.fail("linux.namespaces", [item.get("type") for item in
                                    linux.get("namespaces") or [] if isinstance(item, dict)],
               "pycontainer needs a mount namespace for every container (a new one or one "
               "joined by path)")
    return tuple(names), paths


def _mounts(items, bundle_dir, userns, warnings):
    out = []
    for i, item in enumerate(items):
        where = r.join("mounts", i)
        d = r.obj(item, where, {"destination", "type", "source", "options", "uidMappings",
                                "gidMappings"}, required=("destination",))
        dest = r.string(d, where, "destination", nonempty=True, absolute=True)
        kind = r.string(d, where, "type", "")
        source = r.string(d, where, "source", "")
        options = r.strings(d, where, "options", [])
        for key in ("uidMappings", "gidMappings"):
            if d.get(key):
                r.fail(r.join(where, key), d[key], "id-mapped mounts are not supported")
        bind = kind == "bind" or "bind" in options or "rbind" in options
        if kind == "devpts" and userns:
            # gid 5 (tty) is unmapped in most user namespaces, and devpts refuses an
            # unmapped gid; its ptys then belong to the creating group (runc's rootless
            # spec leaves the option out).
            options = [o for o in options if not o.startswith("gid=")]
        if kind == "cgroup" or kind == "cgroup2":
            warnings.append(f"{where}: {dest} ({kind}) is not mounted: pycontainer does not "
                            "mount cgroupfs into containers yet")
            continue
        out.append(_mount(where, dest, kind, source, options, bind, bundle_dir))
    return tuple(out)


def _mount(where, dest, kind, source, options, bind, bundle_dir):
    if bind and kind not in ("bind", "none", ""):
        r.fail(r.join(where, "type"), kind, "a bind mount's type must be bind, none or empty")
    if not bind and not kind:
        r.fail(r.join(where, "type"), MISSING, "required unless the options say bind or rbind")
    opts = []
    opath = r.join(where, "options")
    for j, opt in enumerate(options):
        if opt == "defaults":
            continue
        if opt in _RECURSIVE_OPTIONS:
            r.fail(r.join(opath, j), opt, "recursive mount attributes are not supported")
        if opt in _UNSUPPORTED_OPTIONS:
            r.fail(r.join(opath, j), opt, "this mount option is not supported")
        if opt not in MOUNT_FLAGS:     # data: passed to mount(2), which a bind ignores
            if "," in opt or not opt:
                r.fail(r.join(opath, j), opt, "not a mount option")
        opts.append(opt)
    if bind:
        if "rbind" in opts:
            opts = [o for o in opts if o != "rbind"]   # the library's bind is recursive
        elif "bind" not in opts:
            opts.append("bind")       # type "bind" alone is a non-recursive bind (runc)
        if not source:
            r.fail(r.join(where, "source"), MISSING, "a bind mount needs a source")
        source = os.path.normpath(os.path.join(bundle_dir, source))
        kind = "bind"
    try:
        return Mount(destination=dest, source=source, type=kind, options=tuple(opts),
                     label=where)
    except ConfigInvalidError as exc:
        raise r.from_library(where, exc, {"mounts.destination": "destination",
                                          "mounts.source": "source", "mounts.type": "type",
                                          "mounts.options": "options"}) from None


def _idmaps(linux, key):
    out = []
    where = r.join("linux", key)
    for i, item in enumerate(r.array(linux, "linux", key, [])):
        p = r.join(where, i)
        d = r.obj(item, p, {"containerID", "hostID", "size"},
                  required=("containerID", "hostID", "size"))
        size = r.uint32(d, p, "size")
        if size == 0:
            r.fail(r.join(p, "size"), size, "must be at least 1")
        out.append(IdMap(r.uint32(d, p, "containerID"), r.uint32(d, p, "hostID"), size))
    return tuple(out)


def _linux(linux, kw, namespaces, warnings):
    kw["uid_mappings"] = _idmaps(linux, "uidMappings")
    kw["gid_mappings"] = _idmaps(linux, "gidMappings")
    sysctl = r.mapping(linux, "linux", "sysctl")
    for key, value in sysctl.items():
        try:
            check_sysctl({key: value}, namespaces)
        except ConfigInvalidError as exc:
            raise SpecError(r.join("linux.sysctl", key), value, exc.reason) from None
    kw["sysctl"] = sysctl
    kw["devices"] = _devices(linux)
    resources, rules = resources_from_oci(linux.get("resources"), warnings)
    kw["resources"] = resources
    kw["device_rules"] = rules
    cgroups_path = r.string(linux, "linux", "cgroupsPath", "")
    if cgroups_path:
        kw["cgroup_path"] = _cgroup_path(cgroups_path)
    if linux.get("seccomp") is not None:
        from ..seccomp import validate_profile      # lazily: the seccomp module is heavy
        try:
            kw["seccomp"] = validate_profile(linux["seccomp"], field="linux.seccomp")
        except ConfigInvalidError as exc:
            raise r.from_library("linux.seccomp", exc) from None
    for key, name in (("maskedPaths", "masked_paths"), ("readonlyPaths", "readonly_paths")):
        paths = r.strings(linux, "linux", key, [])
        for i, p in enumerate(paths):
            if not p.startswith("/"):
                r.fail(r.join(r.join("linux", key), i), p, "expected an absolute path")
        kw[name] = tuple(paths)
    prop = r.string(linux, "linux", "rootfsPropagation", "")
    if prop and MOUNT_FLAGS.get(prop, ("",))[0] != "prop":
        r.fail("linux.rootfsPropagation", prop, "expected shared, slave, private or "
               "unbindable, or their r- (recursive) forms")
    kw["rootfs_propagation"] = prop or None
    label = r.string(linux, "linux", "mountLabel", "")
    if label:
        warnings.append(f"linux.mountLabel: ignored ({label!r}): pycontainer has no SELinux "
                        "support")
    if linux.get("personality") is not None:
        pers = r.obj(linux["personality"], "linux.personality", {"domain", "flags"},
                     required=("domain",))
        domain = r.string(pers, "linux.personality", "domain")
        if domain != "LINUX" or r.strings(pers, "linux.personality", "flags", []):
            r.fail("linux.personality", linux["personality"],
                   "only the LINUX domain without flags is supported")
    for key, what in (("timeOffsets", "time namespaces"), ("intelRdt", "Intel RDT"),
                      ("netDevices", "moving network devices"),
                      ("memoryPolicy", "NUMA memory policies")):
        if linux.get(key) not in (None, {}):
            r.fail(r.join("linux", key), linux[key], f"{what} are not supported")


def _cgroup_path(path):
    """cgroupsPath, normalised ("//a/b/" -> "/a/b"). Absolute: from each hierarchy's
    root; relative: below the runtime's own cgroup (runc's reading)."""
    if ":" in path:
        r.fail("linux.cgroupsPath", path, "systemd cgroup paths (slice:prefix:name) are not "
               "supported: pycontainer manages cgroupfs directly; give a cgroupfs path "
               "such as /a/b/<id>")
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        r.fail("linux.cgroupsPath", path, "expected a cgroup path such as /a/b/<id>")
    return ("/" if path.startswith("/") else "") + "/".join(parts)


def _devices(linux):
    out = []
    for i, item in enumerate(r.array(linux, "linux", "devices", [])):
        where = r.join("linux.devices", i)
        d = r.obj(item, where, {"path", "type", "major", "minor", "fileMode", "uid", "gid"},
                  required=("path", "type"))
        path = r.string(d, where, "path", absolute=True)
        kind = r.string(d, where, "type")
        if kind not in ("c", "b", "u", "p"):
            r.fail(r.join(where, "type"), kind, "expected c, b, u or p")
        fifo = 0 if kind == "p" else r.MISSING     # a FIFO has no numbers
        major = r.integer(d, where, "major", fifo, lo=0, hi=0xFFFFFFFF)
        minor = r.integer(d, where, "minor", fifo, lo=0, hi=0xFFFFFFFF)
        mode = r.integer(d, where, "fileMode", None, lo=0, hi=0o7777)
        uid = r.uint32(d, where, "uid", 0)
        gid = r.uint32(d, where, "gid", 0)
        if os.path.normpath(path) in _BUILTIN_NODES:
            if _BUILTIN_NODES[os.path.normpath(path)] != (major, minor):
                r.fail(where, item, "pycontainer makes this node itself with the standard "
                       "numbers")
            continue
        try:
            out.append(Device(path, kind, major, minor, 0o666 if mode is None else mode,
                              uid, gid))
        except ConfigInvalidError as exc:
            raise r.from_library(where, exc, {f"devices.{k}": k for k in
                                              ("path", "type", "major", "minor", "uid",
                                               "gid")} | {"devices.file_mode": "fileMode"}) \
                from None
    return tuple(out)


def _unsupported(d, path, keys, what="not supported"):
    for key in keys:
        value = d.get(key)
        if value not in (None, 0, False, "", [], {}):
            r.fail(r.join(path, key), value, what)


def resources_from_oci(value, warnings):
    """linux.resources (also `update --resources`) -> (Resources or None, device rules or
    None). Whether this host can apply a blockIO weight or hugepageLimits is the runtime's
    question (oci.runtime.check_host_resources)."""
    if value is None:
        return None, None
    path = "linux.resources"
    d = r.obj(value, path, _RESOURCES)
    kw = {}
    if d.get("memory") is not None:
        mp = r.join(path, "memory")
        m = r.obj(d["memory"], mp, _MEMORY)
        kw["memory_limit"] = _limit(m, mp, "limit")
        kw["memory_swap"] = _limit(m, mp, "swap")
        if m.get("kernel") not in (None, 0, -1):
            warnings.append(f"{mp}.kernel: ignored: kernel memory limits are deprecated and "
                            "not enforced by current kernels")
        reservation = r.integer(m, mp, "reservation", None)
        kw["memory_reservation"] = reservation if reservation and reservation > 0 else None
        _unsupported(m, mp, ("kernelTCP", "swappiness", "disableOOMKiller"))
        if m.get("useHierarchy") is False:
            r.fail(r.join(mp, "useHierarchy"), False, "hierarchical accounting is always on")
        if m.get("checkBeforeUpdate"):
            r.fail(r.join(mp, "checkBeforeUpdate"), True, "not supported")
        if kw["memory_swap"] is not None and kw["memory_swap"] != -1 and \
                kw["memory_limit"] is None:
            r.fail(r.join(mp, "swap"), m.get("swap"), "needs memory.limit too")
    if d.get("cpu") is not None:
        cp = r.join(path, "cpu")
        c = r.obj(d["cpu"], cp, _CPU)
        shares = r.uint64(c, cp, "shares", None)
        kw["cpu_shares"] = shares or None          # 0: the kernel's default
        quota = r.integer(c, cp, "quota", None)
        if quota is not None and quota <= 0:
            quota = -1 if quota < 0 else None
        kw["cpu_quota"] = quota
        kw["cpu_period"] = r.uint64(c, cp, "period", None) or None
        kw["cpuset_cpus"] = r.string(c, cp, "cpus", "") or None
        kw["cpuset_mems"] = r.string(c, cp, "mems", "") or None
        _unsupported(c, cp, ("burst", "realtimeRuntime", "realtimePeriod", "idle"))
    if d.get("pids") is not None:
        pp = r.join(path, "pids")
        p = r.obj(d["pids"], pp, {"limit"}, required=("limit",))
        limit = r.integer(p, pp, "limit")
        kw["pids_limit"] = None if limit == 0 else (-1 if limit < 0 else limit)
    if d.get("blockIO") is not None:
        bp = r.join(path, "blockIO")
        b = r.obj(d["blockIO"], bp, _BLOCKIO)
        weight = r.integer(b, bp, "weight", None, lo=0, hi=1000)
        if weight:
            if weight < 10:
                r.fail(r.join(bp, "weight"), weight, "expected 10..1000 (or 0: unset)")
            kw["blkio_weight"] = weight
        _unsupported(b, bp, sorted(_BLOCKIO - {"weight"}),
                     "per-device block I/O weights and throttles are not supported yet")
    hugepages = r.array(d, path, "hugepageLimits", [])
    if hugepages:
        kw["hugepage_limits"] = _hugepage_limits(hugepages, r.join(path, "hugepageLimits"))
    for key in ("network", "rdma", "unified"):
        if d.get(key) not in (None, {}):
            r.fail(r.join(path, key), d[key], "not supported")
    rules = _device_rules(d, path) if d.get("devices") is not None else None
    kw = {k: v for k, v in kw.items() if v is not None}
    if not kw:
        return None, rules
    try:
        return Resources(**kw), rules
    except ConfigInvalidError as exc:
        fields = {"resources.memory_reservation": "memory.reservation",
                  "resources.blkio_weight": "blockIO.weight",
                  "resources.hugepage_limits": "hugepageLimits",
                  "resources.memory_limit": "memory.limit", "resources.memory_swap":
                  "memory.swap", "resources.cpu_shares": "cpu.shares", "resources.cpu_quota":
                  "cpu.quota", "resources.cpu_period": "cpu.period", "resources.cpuset_cpus":
                  "cpu.cpus", "resources.cpuset_mems": "cpu.mems",
                  "resources.pids_limit": "pids.limit"}
        raise r.from_library(path, exc, fields) from None


_PAGE_UNITS = {"KB": 1, "MB": 1 << 10, "GB": 1 << 20}


def page_size_kb(size):
    """A hugepageLimits pageSize ("2MB", "1GB") in KiB, or None when it is not one."""
    m = re.fullmatch(r"([1-9]\d*)([KMG]B)", size)
    return int(m.group(1)) * _PAGE_UNITS[m.group(2)] if m else None


def _hugepage_limits(items, where):
    """[{pageSize: "2MB", limit: bytes}] -> (("2MB", bytes), ...), in the same order."""
    out = []
    for i, item in enumerate(items):
        p = r.join(where, i)
        d = r.obj(item, p, {"pageSize", "limit"}, required=("pageSize", "limit"))
        size = r.string(d, p, "pageSize")
        if page_size_kb(size) is None:
            r.fail(r.join(p, "pageSize"), size, "expected a size such as 2MB or 1GB")
        out.append((size, r.uint64(d, p, "limit")))
    return tuple(out)


def _limit(d, path, key):
    """A memory byte count: -1 is unlimited (for swap), 0 or absent is unset."""
    value = r.integer(d, path, key, None)
    if value is None or value == 0:
        return None
    if value < 0:
        if key == "limit":
            return None      # runc reads -1 as "no limit", the kernel's default
        return -1
    return value


def _device_rules(d, path):
    where = r.join(path, "devices")
    rules = []
    for i, item in enumerate(r.array(d, path, "devices", [])):
        p = r.join(where, i)
        rule = r.obj(item, p, {"allow", "type", "major", "minor", "access"}, required=("allow",))
        allow = r.boolean(rule, p, "allow")
        kind = r.string(rule, p, "type", "a") or "a"
        major = r.integer(rule, p, "major", None, lo=-1, hi=0xFFFFFFFF)
        minor = r.integer(rule, p, "minor", None, lo=-1, hi=0xFFFFFFFF)
        access = r.string(rule, p, "access", "rwm") or "rwm"
        try:
            rules.append(DeviceRule(allow, kind, -1 if major is None else major,
                                    -1 if minor is None else minor, access))
        except ConfigInvalidError as exc:
            raise r.from_library(p, exc, {"devices.allow": "allow", "devices.type": "type",
                                          "devices.major": "major", "devices.minor": "minor",
                                          "devices.access": "access"}) from None
    # runc allows the standard nodes after the config's rules, whatever they say.
    defaults = list(DEFAULT_RULES[1:])
    if rules[-len(defaults):] != defaults:
        rules += defaults
    if tuple(rules) == tuple(DEFAULT_RULES):
        return None
    return tuple(rules)


# --- writing ------------------------------------------------------------------------------

def _builtin_mounts(userns):
    out = []
    for dest, (kind, options) in BUILTIN_MOUNTS.items():
        opts = [o for o in options if not (userns and o == "gid=5")]
        source = {"/dev/shm": "shm", "/dev": "tmpfs"}.get(dest, kind)
        out.append({"destination": dest, "type": kind, "source": source, "options": opts})
    return out


def _mount_to_oci(m):
    if m.type == "bind":
        opts = list(m.options)
        if "bind" not in opts and "rbind" not in opts:
            opts.insert(0, "rbind")          # the library's bind is recursive by default
        return {"destination": m.destination, "type": "bind", "source": m.source,
                "options": opts}
    d = {"destination": m.destination, "type": m.type, "source": m.source or m.type}
    if m.options:
        d["options"] = list(m.options)
    return d


def _rlimit_to_oci(rl):
    return {"type": rl.type, "hard": RLIM_INFINITY if rl.hard is None else rl.hard,
            "soft": RLIM_INFINITY if rl.soft is None else rl.soft}


def _resources_to_oci(res, rules):
    out = {}
    if res is not None:
        mem = {k: v for k, v in (("limit", res.memory_limit), ("swap", res.memory_swap),
                                 ("reservation", res.memory_reservation)) if v is not None}
        cpu = {k: v for k, v in (("shares", res.cpu_shares), ("quota", res.cpu_quota),
                                 ("period", res.cpu_period), ("cpus", res.cpuset_cpus),
                                 ("mems", res.cpuset_mems))
               if v is not None}
        if mem:
            out["memory"] = mem
        if cpu:
            out["cpu"] = cpu
        if res.pids_limit is not None:
            out["pids"] = {"limit": res.pids_limit}
        if res.blkio_weight is not None:
            out["blockIO"] = {"weight": res.blkio_weight}
        if res.hugepage_limits:
            out["hugepageLimits"] = [{"pageSize": size, "limit": limit}
                                     for size, limit in res.hugepage_limits]
    if rules is None:
        out["devices"] = [{"allow": False, "access": "rwm"}]
    else:
        out["devices"] = [_rule_to_oci(rule) for rule in rules]
    return out


def _rule_to_oci(rule):
    d = {"allow": rule.allow, "type": rule.type}
    if rule.major != -1:
        d["major"] = rule.major
    if rule.minor != -1:
        d["minor"] = rule.minor
    d["access"] = rule.access
    return d


def to_oci(config, process=None, container_id=None, hooks=None, annotations=None):
    """A config.json document for `config` running `process` (its init; default sh).

    What OCI cannot say is not written: the ProcessConfig's stdio, and a process env or
    cwd different from the Config's (the document has one env and cwd: the process's).
    The device rules of Config.devices that the library adds by itself are not listed.
    seccomp "default" is written out as the profile it stands for."""
    process = process or ProcessConfig(args=("sh",))
    uid, gid = process.uid_gid()
    user = {"uid": uid, "gid": gid, "umask": config.umask}
    if process.additional_gids:
        user["additionalGids"] = list(process.additional_gids)
    proc = {"terminal": False, "user": user, "args": list(process.args),
            "env": list(process.env if process.env is not None else config.env),
            "cwd": process.cwd or config.cwd}
    if config.capabilities is not None:
        proc["capabilities"] = {s: list(getattr(config.capabilities, s)) for s in _CAP_SETS}
    rlimits = {rl.type: rl for rl in config.rlimits}
    rlimits.update((rl.type, rl) for rl in process.rlimits)
    if rlimits:
        proc["rlimits"] = [_rlimit_to_oci(rl) for rl in rlimits.values()]
    proc["noNewPrivileges"] = config.no_new_privileges
    if config.oom_score_adj is not None:
        proc["oomScoreAdj"] = config.oom_score_adj

    userns = "user" in config.namespaces
    spec = {"ociVersion": WRITTEN_VERSION, "process": proc,
            "root": {"path": config.rootfs or "/",
                     "readonly": config.rootfs is None or config.readonly_rootfs}}
    if config.hostname:
        spec["hostname"] = config.hostname
    if config.domainname:
        spec["domainname"] = config.domainname
    spec["mounts"] = (_builtin_mounts(userns) if config.default_mounts else []) + \
        [_mount_to_oci(m) for m in config.mounts]
    if hooks:
        spec["hooks"] = hooks_to_oci(hooks)
    notes = dict(annotations or {})
    if config.pdeathsig is not None:
        notes[PDEATHSIG_ANNOTATION] = str(config.pdeathsig)
    if notes:
        spec["annotations"] = notes

    linux = {}
    if config.uid_mappings:
        linux["uidMappings"] = [_idmap_to_oci(m) for m in config.uid_mappings]
        linux["gidMappings"] = [_idmap_to_oci(m) for m in config.gid_mappings]
    if config.sysctl:
        linux["sysctl"] = dict(config.sysctl)
    linux["resources"] = _resources_to_oci(config.resources, config.device_rules)
    if config.cgroup_path:
        linux["cgroupsPath"] = config.cgroup_path
    elif config.cgroup_parent:
        linux["cgroupsPath"] = os.path.join(config.cgroup_parent, container_id or "pycontainer")
    linux["namespaces"] = []
    for name in config.namespaces:
        entry = {"type": OCI_NAMESPACE_TYPES[name]}
        if name in config.namespace_paths:
            entry["path"] = config.namespace_paths[name]
        linux["namespaces"].append(entry)
    if config.devices:
        linux["devices"] = [{"path": d.path, "type": d.type, "major": d.major,
                             "minor": d.minor, "fileMode": d.file_mode, "uid": d.uid,
                             "gid": d.gid} for d in config.devices]
    if config.seccomp is not None:
        if config.seccomp == "default":
            from ..seccomp import DEFAULT_PROFILE    # lazily: the seccomp module is heavy
            linux["seccomp"] = json.loads(json.dumps(DEFAULT_PROFILE))
        else:
            linux["seccomp"] = json.loads(json.dumps(config.seccomp))
    linux["maskedPaths"] = list(config.masked_paths)
    linux["readonlyPaths"] = list(config.readonly_paths)
    if config.rootfs_propagation:
        linux["rootfsPropagation"] = config.rootfs_propagation
    spec["linux"] = linux
    return spec


def _idmap_to_oci(m):
    return {"containerID": m.container_id, "hostID": m.host_id, "size": m.size}


def default_spec(rootless=False):
    """What `pycontainer spec` writes: runc's `runc spec`, adapted to pycontainer.

    Differences from runc's: terminal is false (runc's is true), so that a scripted
    `run` gets plain stdio; no ambient
    capabilities (the kernel refuses ambient capabilities that are not also inheritable,
    and inheritable ones were dropped from runc's default after CVE-2022-29162); no
    /sys/fs/cgroup mount (not supported yet); the masked paths include
    /sys/devices/virtual/powercap as newer runc's do."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    spec = {
        "ociVersion": WRITTEN_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": list(caps),
                             "permitted": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pycontainer",
        "mounts": _builtin_mounts(userns=rootless),
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                           {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": list(DEFAULT_MASKED_PATHS),
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
        },
    }
    if rootless:
        linux = spec["linux"]
        spec["mounts"][5] = {"destination": "/sys", "type": "none", "source": "/sys",
                             "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
        del linux["resources"]
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
        linux["namespaces"].append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    return spec

