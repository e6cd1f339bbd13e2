"""The OCI runtime: the lifecycle that runc's commands drive, over Factory and Container.

``Runtime(root)`` is what `pycontainer <command>` runs (cli.py keeps only the command
line: argv, logging, signal forwarding, the terminal relay, exit codes):

- ``create``: read the bundle (config.json, then what only this host can answer:
  ``check_host``), make the container and its init staged before exec, hand a terminal to
  --console-socket, run the prestart, createRuntime and createContainer hooks, write
  --pid-file; anything failing after the container exists removes it again.
- ``start``: a created container's startContainer hooks, exec, then poststart; ``run``:
  create and start in one, the process's exit status waited for by the caller.
- ``exec``: another process in a running container, from flags or an OCI process object
  (``--process``), which must not ask for what only the container as a whole can have.
- ``kill``, ``delete`` (with the poststop hooks), ``pause``, ``resume``, ``update`` (from
  runc's flags or a linux.resources document), and the ``state``, ``list``, ``ps`` and
  ``events`` documents.

Hooks get the state document as it was at their point of the lifecycle: "creating" with
the staged init's pid for the create-time ones, "running" with the pid the program was
started as for poststart (even when it has exited by the time the hook runs), "stopped"
with pid 0 for poststop.

Startup is part of the interface (podman and containerd run the command line for every
operation), so this module imports only os and sys at load time, as cli.py does; each
function imports what it uses ("lazily" below).
"""
from __future__ import annotations

import os
import sys

__all__ = ["Runtime", "Running", "Failure", "load_bundle", "check_host",
           "check_host_resources", "parse_bytes", "versions",
           "features", "default_spec"]


class Failure(Exception):
    """An operation refused or failed; the message is the one line a command prints."""


class _Quiet:
    def warning(self, msg):
        pass

    def debug(self, msg):
        pass


class Running:
    """A process a command started and may wait for: `exits` gives its status (code, or
    -signal), `console` is its terminal's master when the caller is to relay it."""

    def __init__(self, container, pid, exits, console, extra):
        self.container = container
        self.pid = pid
        self.exits = exits
        self.console = console
        self.extra = extra          # the container's OCI data (hooks), for remove()


# --- bundles and what only the host can answer -------------------------------------------

def load_bundle(bundle_dir, args=None, missing_ok=False):
    """The spec.Bundle of `bundle_dir`/config.json, checked against this host (check_host).
    `args` (a list) replaces process.args. missing_ok: a bundle without config.json gets
    the built-in default (spec.builtin_bundle)."""
    from . import reader as r            # lazily, as every import here
    from .spec import builtin_bundle, parse_spec
    bundle_dir = os.path.abspath(bundle_dir)
    path = os.path.join(bundle_dir, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read(r.MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        if missing_ok and os.path.isdir(bundle_dir):
            return builtin_bundle(bundle_dir, args)
        raise r.SpecError("config.json", r.MISSING, f"no config.json in bundle {bundle_dir}") \
            from None
    except OSError as exc:
        raise r.SpecError("config.json", r.MISSING, f"cannot read {path}: {exc.strerror}") \
            from None
    bundle = parse_spec(r.load_json(data, "config.json"), bundle_dir, args=args)
    check_host(bundle)
    return bundle


def check_host(bundle):
    """What config.json asks that this host must have, refused by JSON path: the root
    directory, and the block I/O weight and huge page limits of linux.resources."""
    from .reader import SpecError        # lazily
    if bundle.config.rootfs is not None and not os.path.isdir(bundle.config.rootfs):
        raise SpecError("root.path", bundle.config.rootfs, "is not a directory")
    check_host_resources(bundle.config.resources)


def check_host_resources(resources, path="linux.resources"):
    """That this host can apply `resources` (a Resources or None, from `path`): a blockIO
    weight needs the blkio (v1) or io (v2) weight file, hugepageLimits the hugetlb
    controller and huge pages of each size."""
    if resources is None:
        return
    from .reader import SpecError        # lazily
    from .spec import page_size_kb
    if resources.blkio_weight is not None and not _host_supports("blkio_weight"):
        raise SpecError(f"{path}.blockIO.weight", resources.blkio_weight,
                        "this host cannot weight a container's block I/O (cgroup v1 needs the "
                        "CFQ or BFQ scheduler's blkio weight file, v2 the io controller "
                        "delegated to our cgroup)")
    limits = resources.hugepage_limits or ()
    for i, (size, _) in enumerate(limits):
        if not _host_page_size(page_size_kb(size)):
            raise SpecError(f"{path}.hugepageLimits[{i}].pageSize", size,
                            "the host has no huge pages of this size")
    if limits and not _host_supports("hugepage_limits"):
        raise SpecError(f"{path}.hugepageLimits",
                        [{"pageSize": s, "limit": n} for s, n in limits],
                        "the host has no hugetlb cgroup controller for containers "
                        "(cgroup v1: not mounted; v2: not delegated to our cgroup)")


def _host_supports(knob):
    from .. import cgroups               # lazily
    return cgroups.supports(knob)


def _host_page_size(kb):
    return os.path.isdir(f"/sys/kernel/mm/hugepages/hugepages-{kb}kB")


def versions():
    """(pycontainer's version, the newest runtime-spec version it knows)."""
    from .. import __version__           # lazily
    from .version import OCI_VERSION
    return __version__, OCI_VERSION


def features():
    """The OCI features document."""
    from .features import features as document     # lazily
    return document()


def default_spec(rootless=False):
    """What `spec` writes (spec.default_spec)."""
    from .spec import default_spec as spec           # lazily
    return spec(rootless=rootless)


# --- the descriptors and files a command is given ----------------------------------------

def _check_preserved_fds(n):
    """--preserve-fds N: each of our descriptors 3 .. 3+N-1 must be open."""
    if n > 256:
        raise Failure("--preserve-fds: at most 256 descriptors")
    for fd in range(3, 3 + n):
        try:
            os.fstat(fd)
        except OSError:
            raise Failure(f"--preserve-fds {n}: descriptor {fd} is not open") from None


def _pid_file_dir(path, where):
    """An open descriptor of --pid-file's directory, refused when others may write to it
    without the sticky bit: anyone could then replace the pid file we write, and the
    client would signal the pid they chose. `where`: "container 'x': create" ..."""
    import stat                          # lazily
    parent = os.path.dirname(os.path.abspath(path))
    try:
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise Failure(f"{where}: --pid-file {path}: {parent}: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        os.close(fd)
        raise Failure(f"{where}: --pid-file {path}: the directory {parent} is writable by "
                      "others without the sticky bit: refused (anyone could replace the "
                      "pid file)")
    return fd


def _check_pid_file(path, where):
    """--pid-file refused before anything is made."""
    if path:
        os.close(_pid_file_dir(path, where))


def _write_pid_file(path, pid, where):
    """Atomically, as runc: a temporary file renamed over `path`. Its name is random and it
    is made O_EXCL | O_NOFOLLOW, so nothing planted in the directory is written through;
    the rename replaces a symlink at `path` rather than following it."""
    import secrets                       # lazily
    dir_fd = _pid_file_dir(path, where)
    try:
        name = os.path.basename(path)
        tmp = f".{name}.{secrets.token_hex(8)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                         os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
            raise Failure(f"{where}: --pid-file {path}: {exc.strerror}") from None
    finally:
        os.close(dir_fd)


def _check_console(console_socket, terminal, where, detached):
    """runc's rules: a detached terminal needs somewhere to send its master."""
    if terminal and detached and not console_socket:
        raise Failure(f"{where}: cannot allocate a terminal for a process that will run "
                      "detached without --console-socket")
    if console_socket and not terminal:
        raise Failure(f"{where}: --console-socket needs a terminal (process.terminal or "
                      "--tty)")


def _stdio(process, terminal, preserve_fds):
    """The process on our stdio, or on a new pty of the container (runc's terminal), with
    our descriptors 3 .. 3+N-1 as its 3, 4, ... (--preserve-fds N)."""
    import dataclasses                   # lazily
    extra = tuple(range(3, 3 + preserve_fds))
    if terminal:
        return dataclasses.replace(process, stdin=None, stdout=None, stderr=None, terminal=True,
                                   extra_files=extra)
    return dataclasses.replace(process, stdin=0, stdout=1, stderr=2, extra_files=extra)


def _hand_console(console_socket, started):
    """Send a terminal's master to --console-socket; without one, keep it (to relay)."""
    if started.console is None or not console_socket:
        return started.console
    from .console import send_master     # lazily
    try:
        send_master(console_socket, started.console)
    except OSError as exc:
        raise Failure(f"--console-socket {console_socket}: {exc.strerror}") from None
    return None


def _user_json(path, flag):
    """The JSON document of a file the user names ("-": stdin), checked as config.json is
    (size, nesting, lone surrogates: oci.reader.load_json)."""
    from .reader import MAX_JSON_BYTES, load_json     # lazily
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_JSON_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise Failure(f"{flag} {path}: {exc.strerror}") from None
    return load_json(data, f"{flag} {path}")


# --- exec's process ----------------------------------------------------------------------

def _process_from_json(path, config):
    """exec --process: an OCI process object, checked against what the processes of a
    container with `config` get (capabilities and the rest are the Config's for every
    process). Returns (ProcessConfig, terminal, warnings)."""
    from ..config import ProcessConfig   # lazily
    from .reader import SpecError
    from .spec import parse_process
    doc = _user_json(path, "--process")
    warnings = []
    spec = parse_process(doc, "process", warnings)
    user = doc.get("user") if isinstance(doc.get("user"), dict) else {}
    for name, label, given in (
            ("capabilities", "process.capabilities", doc.get("capabilities")),
            ("oom_score_adj", "process.oomScoreAdj", doc.get("oomScoreAdj")),
            ("umask", "process.user.umask", user.get("umask"))):
        if given is not None and getattr(spec, name) != getattr(config, name):
            raise SpecError(label, given, "differs from the container's: every process of a "
                            "pycontainer container gets the container's")
    if spec.no_new_privileges != config.no_new_privileges:
        if spec.no_new_privileges:
            raise SpecError("process.noNewPrivileges", True, "the container's processes run "
                            "without no_new_privs; it cannot be set per process")
        warnings.append("process.noNewPrivileges: false, but every process of the container "
                        "runs with no_new_privs")
    return ProcessConfig(args=spec.args, env=spec.env, cwd=spec.cwd, user=spec.user,
                         additional_gids=spec.additional_gids, rlimits=spec.rlimits), \
        spec.terminal, warnings


def _process_from_flags(config, args, env=(), cwd=None, user=None, additional_gids=(),
                       no_new_privs=False):
    """exec's flags (runc's --env, --cwd, --user, --additional-gids, --no-new-privs) -> the
    ProcessConfig of `args` in a container with `config`."""
    from ..config import ProcessConfig   # lazily
    if no_new_privs and not config.no_new_privileges:
        raise Failure("--no-new-privs: cannot be set per process")
    merged = _merge_env(config.env, env) if env else None
    if user is not None and not all(p.isdigit() for p in user.split(":", 1)):
        raise Failure(f"--user {user!r}: expected numeric <uid>[:<gid>]")
    gids = []
    for value in additional_gids:
        for part in value.split(","):
            if not part.strip().isdigit():
                raise Failure(f"--additional-gids {value!r}: expected numeric gids")
            gids.append(int(part))
    return ProcessConfig(args=args, env=merged, cwd=cwd, user=user, additional_gids=gids)


def _merge_env(base, overrides):
    env = {}
    for item in list(base) + list(overrides):
        name, eq, _ = item.partition("=")
        if not eq or not name:
            raise Failure(f"--env {item!r}: expected NAME=value")
        env[name] = item
    return list(env.values())


# --- update's resources ------------------------------------------------------------------

_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_bytes(text, flag):
    """runc's (go-units RAMInBytes) sizes: 1024, 64m, 1.5g, 64MiB, 64MB (binary units);
    -1 is unlimited."""
    import re                            # lazily
    text = text.strip()
    if text == "-1":
        return -1
    m = re.fullmatch(r"(\d+(?:\.\d+)?) ?([kKmMgGtTpP]?)(?:[iI]?[bB])?", text)
    if not m:
        raise Failure(f"--{flag} {text!r}: expected a size such as 67108864, 64m or 1g")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def _int_flag(text, flag):
    try:
        return int(text)
    except ValueError:
        raise Failure(f"--{flag} {text!r}: expected an integer") from None


# runc's update flags: those pycontainer cannot apply (refused unless unset), and those it
# maps onto a Resources field as an integer.
_UNSUPPORTED_UPDATE_FLAGS = ("cpu_rt_period", "cpu_rt_runtime", "kernel_memory",
                            "kernel_memory_tcp", "l3_cache_schema", "mem_bw_schema")
_INT_UPDATE_FLAGS = (("cpu_share", "cpu_shares"), ("cpu_quota", "cpu_quota"),
                     ("cpu_period", "cpu_period"), ("pids_limit", "pids_limit"))


def _resource_changes(resources_file=None, flags=None):
    """{Resources field: value} of `update --resources FILE` (a linux.resources document)
    or else of runc's update flags (`flags`: {"memory": "64m", ...}, None when unset)."""
    import dataclasses                   # lazily
    from .spec import resources_from_oci
    if resources_file:
        doc = _user_json(resources_file, "--resources")
        if isinstance(doc, dict) and doc.get("devices"):
            raise Failure("linux.resources.devices: the device policy cannot be updated")
        resources, _ = resources_from_oci(doc, [])
        check_host_resources(resources)
        if resources is None:
            return {}
        return {k: v for k, v in dataclasses.asdict(resources).items() if v is not None}
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    changes = {}
    for flag in _UNSUPPORTED_UPDATE_FLAGS:
        if flags.get(flag) not in (None, "", "0"):
            raise Failure(f"--{flag.replace('_', '-')}: not supported")
    for flag, key in (("memory", "memory_limit"), ("memory_swap", "memory_swap"),
                      ("memory_reservation", "memory_reservation")):
        if flag in flags:
            changes[key] = parse_bytes(flags[flag], flag.replace("_", "-"))
    if flags.get("blkio_weight") not in (None, "0"):
        changes["blkio_weight"] = _int_flag(flags["blkio_weight"], "blkio-weight")
    for flag, key in _INT_UPDATE_FLAGS:
        if flag in flags:
            changes[key] = _int_flag(flags[flag], flag.replace("_", "-"))
    for key in ("cpuset_cpus", "cpuset_mems"):
        if key in flags:
            changes[key] = flags[key]
    if changes.get("pids_limit") is not None and changes["pids_limit"] <= 0:
        changes["pids_limit"] = -1
    if changes.get("memory_limit") == -1:
        raise Failure("--memory -1: lifting a memory limit is not supported")
    return changes


# --- hooks and the state document --------------------------------------------------------

def _hooks_of(extra):
    from .hooks import parse_hooks       # lazily
    return parse_hooks((extra.get("oci") or {}).get("hooks") or None, refuse=())


def _state_json(container, extra, status=None, pid=None):
    import json                          # lazily
    from .state import state_document
    return json.dumps(state_document(container, status=status, pid=pid, extra=extra))


def _sender(container, pid=None):
    """A function sending a signal to the process `pid` of `container` (None: its init)."""
    def send(signum):
        container.signal(signum, pid=pid)
    return send


# --- the runtime -------------------------------------------------------------------------

class Runtime:
    """The OCI operations on the containers under `root` (None: factory.default_root()).
    `log` has warning(msg) and debug(msg); nest_cgroups: --nest-cgroups."""

    def __init__(self, root=None, log=None, nest_cgroups=False):
        self.root = root
        self.log = log or _Quiet()
        self.nest_cgroups = nest_cgroups
        self._factory = None

    @property
    def factory(self):
        if self._factory is None:
            from ..factory import Factory    # lazily
            self._factory = Factory(root=self.root)
        return self._factory

    def load(self, container_id):
        return self.factory.load(container_id)

    # create, start, run -------------------------------------------------------------------

    def create(self, container_id, bundle_dir=None, *, console_socket=None, pid_file=None,
               preserve_fds=0):
        """`create`: the container of the bundle (default: the working directory), its init
        staged before exec (created)."""
        where = f"container {container_id!r}: create"
        _check_preserved_fds(preserve_fds)
        _check_pid_file(pid_file, where)
        bundle = load_bundle(bundle_dir or os.getcwd())
        _check_console(console_socket, bundle.terminal, "create", detached=True)
        container, started = self._create(container_id, bundle, console_socket, preserve_fds)
        if pid_file:
            try:
                _write_pid_file(pid_file, started.pid, where)
            except BaseException:
                container.destroy()
                raise

    def _create(self, container_id, bundle, console_socket, preserve_fds, reap=False):
        """Make the container and its init, staged before exec (created), hand a terminal's
        master to --console-socket, and run the prestart, createRuntime and createContainer
        hooks. Returns (container, StartedProcess). Anything that fails after the container
        exists removes it again. reap=False (create, run -d): the init's status is left to
        the subreaper it is re-parented to when we exit (conmon, a containerd shim)."""
        import dataclasses                   # lazily
        from ..cgroups import nested_parent
        from .hooks import HookError, run_hooks
        from .state import oci_extra
        log = self.log
        for warning in bundle.warnings:
            log.warning(warning)
        if bundle.process is None:
            raise Failure("process: required field missing (config.json has no process to "
                          "run)")
        extra = oci_extra(bundle)
        hooks = bundle.hooks
        config = bundle.config
        if self.nest_cgroups and config.cgroup_path:
            config = dataclasses.replace(config, cgroup_path=nested_parent(config.cgroup_path))
        container = self.factory.create(container_id, config, extra=extra)
        log.debug(f"created container {container_id!r} in {self.factory.root}")
        try:
            started = container.stage(_stdio(bundle.process, bundle.terminal, preserve_fds),
                                      reap=reap)
            pid = started.pid
            log.debug(f"staged init of {container_id!r}: pid {pid}")
            started.console = _hand_console(console_socket, started)
            if hooks.prestart or hooks.create_runtime or hooks.create_container:
                state = _state_json(container, extra, status="creating", pid=pid)
                try:
                    run_hooks(hooks.prestart, state, "prestart")
                    run_hooks(hooks.create_runtime, state, "createRuntime")
                    run_hooks(hooks.create_container, state, "createContainer",
                              container=container, mount=False)
                except HookError as exc:
                    raise Failure(f"container {container_id!r}: create: {exc}") from None
            return container, started
        except BaseException:
            try:
                container.destroy()
            except Exception as exc:
                log.warning(f"container {container_id!r}: cleanup after a failed create: "
                            f"{exc}")
            raise

    def start(self, container_id):
        """`start`: a created container's program runs."""
        from .lean import start as lean_start     # lazily
        if lean_start(self._root(), container_id):
            return
        container = self.load(container_id)
        state = str(container.run_state())
        pid = container.init_pid()
        if state != "created" or not pid:
            raise Failure(f"container {container_id!r}: start: cannot start a container that "
                          f"is {state}" +
                          ("" if state != "created" else " without a staged init"))
        extra = container.extra()
        self._exec_init(container, extra, "start")
        self._poststart(container, extra, pid)

    def _exec_init(self, container, extra, operation):
        """The startContainer hooks, inside the container, then exec. A failing hook stops
        the container (its staged init is killed) and fails the operation, as the spec
        asks."""
        hooks = _hooks_of(extra)
        if hooks.start_container:
            import signal                    # lazily
            from .hooks import HookError, run_hooks
            try:
                run_hooks(hooks.start_container, _state_json(container, extra),
                          "startContainer", container=container, mount=True)
            except HookError as exc:
                container.signal(signal.SIGKILL)
                raise Failure(f"container {container.id!r}: {operation}: {exc}") from None
        container.exec()

    def _poststart(self, container, extra, pid):
        """The poststart hooks, with the state as it was when the program was started: it
        may have exited by now, which the hooks must not be told."""
        hooks = _hooks_of(extra)
        if hooks.poststart:
            from .hooks import run_hooks     # lazily
            run_hooks(hooks.poststart,
                      _state_json(container, extra, status="running", pid=pid),
                      "poststart", warn=self.log.warning)

    def run(self, container_id, bundle_dir=None, *, args=None, detach=False,
            console_socket=None, pid_file=None, preserve_fds=0, on_exec=None):
        """`run`: create and start. on_exec(send) is called as soon as the program runs
        (before the poststart hooks), `send(signum)` signalling it. Returns the Running
        init; without `detach` the caller waits for it and then remove()s it (unless it is
        to be kept)."""
        where = f"container {container_id!r}: run"
        _check_preserved_fds(preserve_fds)
        _check_pid_file(pid_file, where)
        bundle = load_bundle(bundle_dir or os.getcwd(), args=args, missing_ok=True)
        _check_console(console_socket, bundle.terminal, "run", detached=detach)
        container, started = self._create(container_id, bundle, console_socket, preserve_fds,
                                          reap=not detach)
        pid, exits = started
        extra = None
        try:
            extra = container.extra()
            self._exec_init(container, extra, "run")
            self.log.debug(f"started {container_id!r}")
            if on_exec is not None:
                on_exec(_sender(container))
            self._poststart(container, extra, pid)
            if pid_file:
                _write_pid_file(pid_file, pid, where)
        except BaseException:
            self._remove(container, extra)
            raise
        return Running(container, pid, exits, started.console, extra)

    def remove(self, running):
        """Destroy the container of a Running init (run without --keep), then poststop."""
        self._remove(running.container, running.extra)

    def _remove(self, container, extra):
        try:
            container.destroy()
        finally:
            if extra is not None:
                hooks = _hooks_of(extra)
                if hooks.poststop:
                    from .hooks import run_hooks     # lazily
                    run_hooks(hooks.poststop,
                              _state_json(container, extra, status="stopped", pid=0),
                              "poststop", warn=self.log.warning)

    # exec ---------------------------------------------------------------------------------

    def exec(self, container_id, args=(), *, process_file=None, env=(), cwd=None, user=None,
             additional_gids=(), tty=False, no_new_privs=False, detach=False,
             ignore_paused=False, console_socket=None, pid_file=None, preserve_fds=0,
             on_exec=None):
        """`exec`: `args` (with runc's flags), or the OCI process object in
        `process_file`, in a running container. on_exec(send) as for run. Returns the
        Running process; without `detach` the caller waits for it."""
        where = f"container {container_id!r}: exec"
        _check_preserved_fds(preserve_fds)
        _check_pid_file(pid_file, where)
        container = self.load(container_id)
        if process_file:
            process, terminal, warnings = _process_from_json(process_file, container.config)
            for w in warnings:
                self.log.warning(w)
        else:
            process = _process_from_flags(container.config, args, env=env, cwd=cwd, user=user,
                                         additional_gids=additional_gids,
                                         no_new_privs=no_new_privs)
            terminal = tty
        _check_console(console_socket, terminal, "exec", detached=detach)
        state = str(container.run_state())
        if state in ("paused", "pausing") and not ignore_paused:
            raise Failure(f"container {container_id!r}: exec: the container is {state}")
        if state != "running":
            raise Failure(f"container {container_id!r}: exec: cannot exec in a {state} "
                          "container")
        started = container.start(_stdio(process, terminal, preserve_fds), reap=not detach)
        pid, exits = started
        console = _hand_console(console_socket, started)
        if on_exec is not None:
            on_exec(_sender(container, pid))
        if pid_file:
            _write_pid_file(pid_file, pid, where)
        return Running(container, pid, exits, console, None)

    # kill, delete, pause, resume, update --------------------------------------------------

    def kill(self, container_id, signum, all=False):
        if not all:
            from .lean import kill as lean_kill      # lazily
            if lean_kill(self._root(), container_id, signum):
                return
        container = self.load(container_id)
        state = str(container.run_state())
        # --all signals whatever is left in the container's cgroups, its init gone or
        # not, as runc's does: containerd's shim sends it once an init that shares a pid
        # namespace (its pod's) has exited, to end the processes that init left running.
        if not all and (state == "stopped" or (state == "created" and not container.init_pid())):
            raise Failure(f"container {container_id!r}: kill: container not running "
                          f"({state})")
        container.signal(signum, all=all)

    def delete(self, container_id, force=False):
        """`delete`: a stopped or created container, its poststop hooks run; `force`: in
        any state, and one whose state cannot be read, and none at all."""
        from .lean import delete as lean_delete     # lazily
        if lean_delete(self._root(), container_id):
            return
        from ..errors import ContainerError, ContainerNotExistError
        from ..state import StateInvalidError
        try:
            container = self.factory.load(container_id)
        except ContainerNotExistError:
            if force:
                return
            raise
        except StateInvalidError:
            if not force:
                raise
            self.factory.destroy(container_id)
            return
        if not force:
            # Only a refusal needs the state; with force it may already be gone (another
            # delete), which destroy() takes in its stride.
            state = str(container.run_state())
            if state in ("running", "paused", "pausing"):
                raise Failure(f"container {container_id!r}: delete: cannot delete a "
                              f"container that is {state} (use --force)")
        try:
            extra = container.extra()
        except ContainerError:
            extra = {}
        self._remove(container, extra)

    def pause(self, container_id, timeout=10.0):
        """`pause`: frozen, waiting for the kernel to say so."""
        import time                          # lazily
        from .lean import pause as lean_pause
        status = lean_pause(self._root(), container_id)
        if status is None:
            container = self.load(container_id)
            container.pause()

            def status():
                return str(container.run_state())
        deadline = time.monotonic() + timeout
        while status() == "pausing":
            if time.monotonic() > deadline:
                raise Failure(f"container {container_id!r}: pause: still freezing after "
                              f"{timeout}s")
            time.sleep(0.001)

    def resume(self, container_id):
        from .lean import resume as lean_resume     # lazily
        if not lean_resume(self._root(), container_id):
            self.load(container_id).resume()

    def update(self, container_id, resources_file=None, flags=None):
        """`update`: the container's resources changed as runc's update flags or a linux.resources document (resources_file) say."""
        import dataclasses                   # lazily
        from ..config import Resources
        container = self.load(container_id)
        changes = _resource_changes(resources_file, flags)
        if changes:
            current = container.config.resources or Resources()
            container.set_resources(dataclasses.replace(current, **changes))

    # documents ----------------------------------------------------------------------------

    def _root(self):
        from ..state import default_root     # lazily
        return os.path.abspath(self.root or default_root())

    def state(self, container_id):
        """The OCI state document."""
        from .lean import state_document as lean_document    # lazily
        doc = lean_document(self._root(), container_id)
        if doc is not None:
            return doc
        from .state import state_document
        return state_document(self.load(container_id))

    def list(self):
        """The state documents of every container. One whose state cannot be read is left
        out with a warning naming it and why; `delete --force` removes it."""
        from ..errors import ContainerError, ContainerNotExistError    # lazily
        from .lean import state_documents
        from .state import state_document

        def warn(container_id, exc):
            self.log.warning(f"list: skipped container {container_id!r}: {exc.detail}")

        def full(container_id):
            return state_document(self.factory.load(container_id))

        docs = state_documents(self._root(), full, warn)
        if docs is not None:
            return docs
        docs = []
        for container_id in self.factory.list():
            try:
                docs.append(full(container_id))
            except ContainerNotExistError:
                continue            # destroyed meanwhile, or being created
            except ContainerError as exc:
                warn(container_id, exc)
        return docs

    def pids(self, container_id):
        return self.load(container_id).processes()

    def ps(self, container_id, ps_args=()):
        """`ps`: the lines of `ps ps_args` (default -ef) about the container's processes,
        the header first."""
        import subprocess                    # lazily
        pids = set(self.pids(container_id))
        ps_args = list(ps_args) or ["-ef"]
        try:
            out = subprocess.run(["ps", *ps_args], capture_output=True, text=True,
                                 check=True).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise Failure(f"ps {' '.join(ps_args)}: {exc}") from None
        lines = out.splitlines()
        if not lines:
            return []
        header = lines[0].split()
        if "PID" not in header:
            raise Failure("ps: no PID column in the output of ps " + " ".join(ps_args))
        col = header.index("PID")
        out = [lines[0]]
        for line in lines[1:]:
            fields = line.split()
            if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
                out.append(line)
        return out

    def stats_event(self, container_id):
        """runc's `events --stats`: one stats event."""
        from .events import stats_event      # lazily
        return stats_event(container_id, self.load(container_id).stats())

    def events(self, container_id, interval):
        """runc's `events`: the container's events every `interval` seconds, as documents,
        until it is deleted."""
        from .events import to_oci_event     # lazily
        for event in self.load(container_id).events(interval):
            yield to_oci_event(container_id, event)
