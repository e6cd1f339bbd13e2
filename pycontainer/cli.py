"""`pycontainer`: a runc-compatible command line over Factory and Container.

    pycontainer [global options] command [command options] [arguments...]

Flags are spelled as runc spells them and parsed as runc's parser does: one or two dashes
(`-bundle x`, `--bundle=x`), a value in the same word after '=' or in the next word,
flags before or after the positional arguments (but `exec` and `ps` stop at the first
one: what follows the id is the command), and `--` ending the flags.

Startup is part of the interface (podman and containerd run this for every operation), so
this module imports only os and sys at load time; each command imports what it needs.
"""
from __future__ import annotations

import os
import sys

__all__ = ["main"]

PROG = "pycontainer"
DEFAULT_LOG_FORMAT = "text"


class UsageError(Exception):
    """A bad command line: unknown command or flag, missing argument."""


class Failure(Exception):
    """An error the command reports as its one line (no traceback)."""


# --- the command-line grammar --------------------------------------------------------------

class Flag:
    __slots__ = ("names", "takes_value", "multi", "default", "help")

    def __init__(self, names, takes_value=False, default=None, multi=False, help=""):
        self.names = names.split("|")
        self.takes_value = takes_value
        self.multi = multi
        self.default = ([] if multi else default)
        self.help = help

    @property
    def key(self):
        return self.names[0].replace("-", "_")


def V(names, default=None, help=""):
    return Flag(names, True, default, help=help)


def B(names, help=""):
    return Flag(names, False, False, help=help)


def M(names, help=""):
    return Flag(names, True, multi=True, help=help)


class Options(dict):
    __getattr__ = dict.__getitem__


_TRUE = {"true", "1", "t", "yes"}
_FALSE = {"false", "0", "f", "no"}


def parse(argv, flags, stop_at_positional=False):
    """(Options, positional arguments) of argv against `flags` (a list of Flag)."""
    by_name = {n: f for f in flags for n in f.names}
    opts = Options({f.key: (list(f.default) if f.multi else f.default) for f in flags})
    pos = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            pos.extend(argv[i:])
            break
        if len(arg) < 2 or not arg.startswith("-") or arg.startswith("---"):
            pos.append(arg)
            if stop_at_positional:
                pos.extend(argv[i:])
                break
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        flag = by_name.get(name)
        if flag is None:
            if name in ("h", "help"):
                raise _Help()
            raise UsageError(f"flag provided but not defined: {arg.split('=')[0]}")
        if flag.takes_value:
            if not eq:
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: {arg}")
                value = argv[i]
                i += 1
        elif eq:
            if value.lower() not in _TRUE | _FALSE:
                raise UsageError(f"invalid boolean value {value!r} for flag {arg.split('=')[0]}")
            value = value.lower() in _TRUE
        else:
            value = True
        if flag.multi:
            opts[flag.key].append(value)
        else:
            opts[flag.key] = value
    return opts, pos


class _Help(Exception):
    pass


GLOBAL_FLAGS = [
    V("root", help="root directory for storage of container state"),
    V("log", help="set the log file to write pycontainer logs to (default: stderr)"),
    V("log-format", DEFAULT_LOG_FORMAT, help="set the log format ('text' or 'json')"),
    B("debug", help="enable debug logging"),
    B("systemd-cgroup", help="not supported: pycontainer manages cgroupfs itself"),
    V("rootless", "auto", help="'true', 'false' or 'auto' (pycontainer decides by uid)"),
    V("criu", help="not supported (no checkpoint/restore)"),
    B("nest-cgroups", help="take absolute cgroupsPaths below this runtime's own cgroup, as "
                           "relative ones are: containers stay within the limits of whoever "
                           "runs the runtime"),
    B("version|v", help="print the version"),
]

_CREATE = [V("bundle|b"), V("console-socket"), V("pid-file"), B("no-pivot"),
           B("no-new-keyring"), V("preserve-fds", "0")]
_UPDATE = [V("resources|r"), V("blkio-weight"), V("cpu-period"), V("cpu-quota"),
           V("cpu-share"), V("cpu-rt-period"), V("cpu-rt-runtime"), V("cpuset-cpus"),
           V("cpuset-mems"), V("memory"), V("memory-reservation"), V("memory-swap"),
           V("kernel-memory"), V("kernel-memory-tcp"), V("pids-limit"),
           V("l3-cache-schema"), V("mem-bw-schema")]

# name -> (flags, usage, stop flags at the first positional)
COMMANDS = {
    "create": (_CREATE, "create [command options] <container-id>", False),
    "start": ([], "start <container-id>", False),
    "run": (_CREATE + [B("detach|d"), B("keep"), B("rm"), B("no-subreaper")],
            "run [command options] <container-id> [-- args...]", False),
    "state": ([], "state <container-id>", False),
    "kill": ([B("all|a")], "kill [--all] <container-id> [signal]", False),
    "delete": ([B("force|f")], "delete [--force] <container-id>", False),
    "exec": ([V("console-socket"), V("cwd"), M("env|e"), B("tty|t"), V("user|u"),
              M("additional-gids|g"), V("process|p"), B("detach|d"), V("pid-file"),
              V("process-label"), V("apparmor"), B("no-new-privs"), M("cap|c"),
              V("preserve-fds", "0"), V("cgroup"), B("ignore-paused")],
             "exec [command options] <container-id> <command> [args...]", True),
    "ps": ([V("format|f", "table")], "ps [--format table|json] <container-id> [ps options]",
           True),
    "list": ([V("format|f", "table"), B("quiet|q")], "list [--format table|json] [-q]", False),
    "pause": ([], "pause <container-id>", False),
    "resume": ([], "resume <container-id>", False),
    "events": ([V("interval", "5s"), B("stats")],
               "events [--stats] [--interval 5s] <container-id>", False),
    "update": (_UPDATE, "update [command options] <container-id>", False),
    "spec": ([V("bundle|b"), B("rootless")], "spec [--rootless] [--bundle dir]", False),
    "features": ([], "features", False),
}

USAGE = f"""usage: {PROG} [global options] command [command options] [arguments...]

A runc-compatible OCI runtime built on the pycontainer library.

commands: {', '.join(COMMANDS)}
global options: --root DIR, --log FILE, --log-format text|json, --debug, --rootless VALUE,
                --systemd-cgroup (not supported), --version
"""


# --- logging -------------------------------------------------------------------------------

class Log:
    """runc's logging: to --log (default stderr) as text or JSON lines."""

    def __init__(self, path=None, fmt=DEFAULT_LOG_FORMAT, debug=False):
        self.path = path
        self.fmt = fmt
        self.debug_on = debug

    def _write(self, level, msg):
        import time
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + \
            f".{int(now % 1 * 1e9):09d}Z"
        if self.fmt == "json":
            import json
            line = json.dumps({"level": level, "msg": msg, "time": stamp})
        else:
            quoted = msg.replace("\\", "\\\\").replace('"', '\\"')
            line = f'time="{stamp}" level={level} msg="{quoted}"'
        data = (line + "\n").encode()
        if self.path is None:
            os.write(2, data)
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            os.write(2, data)
            return
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def debug(self, msg):
        if self.debug_on:
            self._write("debug", msg)

    def warning(self, msg):
        if self.path is None:
            os.write(2, f"{PROG}: warning: {_one_line(msg)}\n".encode())
        else:
            self._write("warning", _one_line(msg))

    def error(self, msg):
        """The one line on stderr, and the log entry when there is a log file."""
        msg = _one_line(msg)
        os.write(2, (msg + "\n").encode())
        if self.path is not None:
            self._write("error", msg)


def _one_line(msg):
    return " ".join(str(msg).split("\n")).strip()


# --- helpers ---------------------------------------------------------------------------------

def _factory(g):
    from .factory import Factory
    return Factory(root=g.root)


def _one_id(pos, usage, extra_ok=False):
    if not pos:
        raise UsageError(f"{usage}: missing <container-id>")
    if len(pos) > 1 and not extra_ok:
        raise UsageError(f"{usage}: unexpected arguments {pos[1:]}")
    return pos[0]


def _load(g, container_id):
    return _factory(g).load(container_id)


def _state_name(container):
    return str(container.run_state())


def _pid_file_dir(path, where):
    """An open descriptor of --pid-file's directory, refused when others may write to it
    without the sticky bit: anyone could then replace the pid file we write, and the
    client would signal the pid they chose. `where`: "container 'x': create" ..."""
    import stat
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


def _check_pid_file(opts, where):
    """--pid-file refused before anything is made."""
    if opts.pid_file:
        os.close(_pid_file_dir(opts.pid_file, where))


def _write_pid_file(path, pid, where):
    """Atomically, as runc: a temporary file renamed over `path`. Its name is random and it
    is made O_EXCL | O_NOFOLLOW, so nothing planted in the directory is written through;
    the rename replaces a symlink at `path` rather than following it."""
    import secrets
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


def _stdio(process, terminal, opts):
    """The process on our stdio, or on a new pty of the container (runc's terminal), with
    our descriptors 3 .. 3+N-1 as its 3, 4, ... (--preserve-fds N)."""
    import dataclasses
    extra = tuple(range(3, 3 + _preserved_fds(opts)))
    if terminal:
        return dataclasses.replace(process, stdin=None, stdout=None, stderr=None, terminal=True,
                                   extra_files=extra)
    return dataclasses.replace(process, stdin=0, stdout=1, stderr=2, extra_files=extra)


def _check_console(opts, terminal, where, detached):
    """runc's rules: a detached terminal needs somewhere to send its master."""
    if terminal and detached and not opts.get("console_socket"):
        raise Failure(f"{where}: cannot allocate a terminal for a process that will run "
                      "detached without --console-socket")
    if opts.get("console_socket") and not terminal:
        raise Failure(f"{where}: --console-socket needs a terminal (process.terminal or "
                      "--tty)")


def _hand_console(opts, started):
    """Send a terminal's master to --console-socket; without one, keep it (to relay)."""
    if started.console is None or not opts.get("console_socket"):
        return started.console
    from .oci.console import send_master
    try:
        send_master(opts.console_socket, started.console)
    except OSError as exc:
        raise Failure(f"--console-socket {opts.console_socket}: {exc.strerror}") from None
    return None


def _preserved_fds(opts):
    """--preserve-fds N: each of our descriptors 3 .. 3+N-1 must be open."""
    try:
        n = int(opts.preserve_fds)
    except ValueError:
        raise UsageError(f"invalid value {opts.preserve_fds!r} for --preserve-fds") from None
    if n < 0:
        raise UsageError("--preserve-fds must not be negative")
    if n > 256:
        raise Failure("--preserve-fds: at most 256 descriptors")
    for fd in range(3, 3 + n):
        try:
            os.fstat(fd)
        except OSError:
            raise Failure(f"--preserve-fds {n}: descriptor {fd} is not open") from None
    return n


def _hooks_from(extra):
    from .oci.hooks import parse_hooks
    return parse_hooks((extra.get("oci") or {}).get("hooks") or None, refuse=())


def _state_json(container, extra, status=None, pid=None):
    import json
    from .oci.state import state_document
    return json.dumps(state_document(container, status=status, pid=pid, extra=extra))


# --- the create/start split ----------------------------------------------------------------

def _create(g, log, opts, container_id, bundle, reap=False):
    """Make the container and its init, staged before exec (created), hand a terminal's
    master to --console-socket, and run the prestart and createRuntime hooks. Returns
    (container, StartedProcess). Anything that fails after the container exists
    removes it again. reap=False (create, run -d): the init's status is left to the
    subreaper it is re-parented to when we exit (conmon, a containerd shim)."""
    from .oci.hooks import HookError, run_hooks
    from .oci.state import oci_extra
    for warning in bundle.warnings:
        log.warning(warning)
    if bundle.process is None:
        raise Failure("process: required field missing (config.json has no process to run)")
    extra = oci_extra(bundle)
    hooks = bundle.hooks
    factory = _factory(g)
    config = bundle.config
    if g.nest_cgroups and config.cgroup_parent:
        import dataclasses
        config = dataclasses.replace(config, cgroup_parent=_nested(config.cgroup_parent))
    container = factory.create(container_id, config, extra=extra)
    log.debug(f"created container {container_id!r} in {factory.root}")
    try:
        started = container.stage(_stdio(bundle.process, bundle.terminal, opts), reap=reap)
        pid = started.pid
        log.debug(f"staged init of {container_id!r}: pid {pid}")
        started.console = _hand_console(opts, started)
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
            log.warning(f"container {container_id!r}: cleanup after a failed create: {exc}")
        raise


def _nested(parent):
    """--nest-cgroups: `parent` below our own cgroup. Clients (podman's stats, the
    containerd shim's metrics) expect one path in every hierarchy, so it goes below the
    deepest of our own cgroups when the others are its ancestors (a hybrid host where
    only the memory cgroup is ours), else below our own cgroup in each hierarchy."""
    from .cgroups import detect
    host = detect()
    owns = [h.own for h in (*host.v1.values(), host.unified) if h is not None]
    deepest = max(owns, key=len, default="/")
    if all(o == "/" or deepest == o or deepest.startswith(o.rstrip("/") + "/") for o in owns):
        return deepest.rstrip("/") + "/" + parent.strip("/")
    return parent.strip("/") or None


def _poststart(log, container, extra):
    hooks = _hooks_from(extra)
    if hooks.poststart:
        from .oci.hooks import run_hooks
        run_hooks(hooks.poststart, _state_json(container, extra), "poststart",
                  warn=log.warning)


def _poststop(log, container, extra):
    hooks = _hooks_from(extra)
    if hooks.poststop:
        from .oci.hooks import run_hooks
        run_hooks(hooks.poststop, _state_json(container, extra, status="stopped", pid=0),
                  "poststop", warn=log.warning)


def _bundle(opts, container_id, args=None, missing_ok=False):
    from .oci.spec import load_bundle
    return load_bundle(opts.bundle or os.getcwd(), args=args, container_id=container_id,
                       missing_ok=missing_ok)


def _creation_flags(log, opts, where):
    _preserved_fds(opts)
    _check_pid_file(opts, where)
    if opts.no_pivot:
        log.warning("--no-pivot ignored: pycontainer always uses pivot_root")
    if opts.no_new_keyring:
        log.debug("--no-new-keyring: pycontainer does not make session keyrings")


def cmd_create(g, log, opts, pos):
    container_id = _one_id(pos, "create")
    _creation_flags(log, opts, f"container {container_id!r}: create")
    bundle = _bundle(opts, container_id)
    _check_console(opts, bundle.terminal, "create", detached=True)
    container, started = _create(g, log, opts, container_id, bundle)
    if opts.pid_file:
        try:
            _write_pid_file(opts.pid_file, started.pid, f"container {container_id!r}: create")
        except BaseException:
            container.destroy()
            raise
    return 0


def cmd_start(g, log, opts, pos):
    container_id = _one_id(pos, "start")
    container = _load(g, container_id)
    state = _state_name(container)
    if state != "created" or not container.init_pid():
        raise Failure(f"container {container_id!r}: start: cannot start a container that "
                      f"is {state}" + ("" if state != "created" else " without a staged init"))
    _start_container(container, container.extra(), "start")
    _poststart(log, container, container.extra())
    return 0


def _start_container(container, extra, operation):
    """The startContainer hooks, inside the container, then exec. A failing hook stops
    the container (its staged init is killed) and fails the start, as the spec asks."""
    hooks = _hooks_from(extra)
    if hooks.start_container:
        import signal
        from .oci.hooks import HookError, run_hooks
        try:
            run_hooks(hooks.start_container, _state_json(container, extra), "startContainer",
                      container=container, mount=True)
        except HookError as exc:
            container.signal(signal.SIGKILL)
            raise Failure(f"container {container.id!r}: {operation}: {exc}") from None
    container.exec()


def cmd_run(g, log, opts, pos):
    container_id = _one_id(pos, "run", extra_ok=True)
    args = pos[1:] or None
    _creation_flags(log, opts, f"container {container_id!r}: run")
    if opts.detach and (opts.rm or opts.keep):
        raise UsageError("--rm and --keep do not go with --detach")
    bundle = _bundle(opts, container_id, args=args, missing_ok=True)
    _check_console(opts, bundle.terminal, "run", detached=opts.detach)
    forwarder = None if opts.detach else _Forwarder()
    try:
        container, started = _create(g, log, opts, container_id, bundle, reap=not opts.detach)
        pid, exits = started
        extra = None
        try:
            extra = container.extra()
            _start_container(container, extra, "run")
            log.debug(f"started {container_id!r}")
            if forwarder:
                forwarder.target(container)
            _poststart(log, container, extra)
            if opts.pid_file:
                _write_pid_file(opts.pid_file, pid, f"container {container_id!r}: run")
        except BaseException:
            _remove(log, container, extra)
            raise
        if opts.detach:
            return 0
        status = _wait(exits, started.console)
    finally:
        if forwarder:
            forwarder.restore()
    if not opts.keep:
        _remove(log, container, extra)
    return _exit_code(status)


def _remove(log, container, extra):
    try:
        container.destroy()
    finally:
        if extra is not None:
            _poststop(log, container, extra)


def _exit_code(status):
    if status is None:
        return 0
    return 128 - status if status < 0 else status


_FORWARDED = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM",
              "SIGCONT", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGWINCH", "SIGPWR")


class _Forwarder:
    """Forwards the signals this process gets to the container's process, as runc does in
    the foreground. Installed before the container exists, so a signal that comes while
    it is being made is not lost (nor kills us and orphans it): it is held and delivered
    once there is a process to deliver it to."""

    def __init__(self):
        import signal
        self.container = None
        self.pid = None
        self.pending = []
        self.old = {}
        for name in _FORWARDED:
            sig = getattr(signal, name, None)
            if sig is not None:
                self.old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        if self.container is None:
            self.pending.append(signum)
        else:
            self._send(signum)

    def _send(self, signum):
        try:
            self.container.signal(signum, pid=self.pid)
        except Exception:
            pass

    def target(self, container, pid=None):
        self.container, self.pid = container, pid
        pending, self.pending = self.pending, []
        for signum in pending:
            self._send(signum)

    def restore(self):
        import signal
        for sig, handler in self.old.items():
            signal.signal(sig, handler)
        self.old = {}


def _wait(exits, console=None):
    """The exit status on `exits`, waiting in slices so signal handlers run promptly.
    With a terminal master, our stdio is relayed to it until the process hangs up."""
    import queue
    if console is not None:
        from .oci.console import relay
        relay(console)
    while True:
        try:
            return exits.get(timeout=0.5)
        except queue.Empty:
            continue


def cmd_state(g, log, opts, pos):
    import json
    from .oci.state import state_document
    container = _load(g, _one_id(pos, "state"))
    print(json.dumps(state_document(container), indent=2))
    return 0


def parse_signal(text):
    import signal
    value = text.strip()
    if value.isdigit():
        num = int(value)
        if not 1 <= num <= signal.SIGRTMAX:
            raise Failure(f"invalid signal {text!r}")
        return num
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith("SIGRTMIN+") or name.startswith("SIGRTMAX-"):
        base, _, off = name[3:].partition("+" if "+" in name else "-")
        if off.isdigit():
            num = (signal.SIGRTMIN + int(off)) if base == "RTMIN" else (signal.SIGRTMAX - int(off))
            if signal.SIGRTMIN <= num <= signal.SIGRTMAX:
                return num
    sig = getattr(signal.Signals, name, None) if name in signal.Signals.__members__ else None
    if sig is None:
        raise Failure(f"unknown signal {text!r}")
    return int(sig)


def cmd_kill(g, log, opts, pos):
    container_id = _one_id(pos[:1], "kill")
    if len(pos) > 2:
        raise UsageError(f"kill: unexpected arguments {pos[2:]}")
    sig = parse_signal(pos[1] if len(pos) > 1 else "SIGTERM")
    container = _load(g, container_id)
    state = _state_name(container)
    if state == "stopped" or (state == "created" and not container.init_pid()):
        raise Failure(f"container {container_id!r}: kill: container not running ({state})")
    container.signal(sig, all=opts.all)
    return 0


def cmd_delete(g, log, opts, pos):
    from .errors import ContainerError, ContainerNotExistError
    from .state import StateInvalidError
    container_id = _one_id(pos, "delete")
    factory = _factory(g)
    try:
        container = factory.load(container_id)
    except ContainerNotExistError:
        if opts.force:
            return 0
        raise
    except StateInvalidError:
        if not opts.force:
            raise
        factory.destroy(container_id)
        return 0
    if not opts.force:
        # Only a refusal needs the state; with --force it may already be gone (another
        # delete), which destroy() takes in its stride.
        state = _state_name(container)
        if state in ("running", "paused", "pausing"):
            raise Failure(f"container {container_id!r}: delete: cannot delete a container "
                          f"that is {state} (use --force)")
    try:
        extra = container.extra()
    except ContainerError:
        extra = {}
    _remove(log, container, extra)
    return 0


def _process_from_json(path, container):
    """exec --process: an OCI process object, checked against what the container's
    processes get (capabilities and the rest are the Config's for every process)."""
    from .oci.reader import SpecError
    from .oci.spec import parse_process
    doc = _user_json(path, "--process")
    warnings = []
    spec = parse_process(doc, "process", warnings)
    config = container.config
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
    from .config import ProcessConfig
    return ProcessConfig(args=spec.args, env=spec.env, cwd=spec.cwd, user=spec.user,
                         additional_gids=spec.additional_gids, rlimits=spec.rlimits), \
        spec.terminal, warnings


def _user_json(path, flag):
    """The JSON document of a file the user names ("-": stdin), checked as config.json is
    (size, nesting, lone surrogates: oci.reader.load_json)."""
    from .oci.reader import MAX_JSON_BYTES, load_json
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_JSON_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise Failure(f"{flag} {path}: {exc.strerror}") from None
    return load_json(data, f"{flag} {path}")


def cmd_exec(g, log, opts, pos):
    from .config import ProcessConfig
    container_id = _one_id(pos[:1], "exec")
    args = pos[1:]
    _preserved_fds(opts)
    _check_pid_file(opts, f"container {container_id!r}: exec")
    for flag in ("process_label", "apparmor", "cgroup"):
        if opts[flag]:
            raise Failure(f"--{flag.replace('_', '-')}: not supported")
    if opts.cap:
        raise Failure("--cap: exec'd processes get the container's capabilities; adding "
                      "some per process is not supported")
    container = _load(g, container_id)
    if opts.process:
        if args:
            raise UsageError("exec: --process and a command do not go together")
        process, terminal, warnings = _process_from_json(opts.process, container)
        for w in warnings:
            log.warning(w)
    else:
        if not args:
            raise UsageError("exec: missing <command> (or --process)")
        if opts.no_new_privs and not container.config.no_new_privileges:
            raise Failure("--no-new-privs: cannot be set per process")
        env = None
        if opts.env:
            env = _merge_env(container.config.env, opts.env)
        user = opts.user
        if user is not None and not all(p.isdigit() for p in user.split(":", 1)):
            raise Failure(f"--user {user!r}: expected numeric <uid>[:<gid>]")
        gids = []
        for value in opts.additional_gids:
            for part in value.split(","):
                if not part.strip().isdigit():
                    raise Failure(f"--additional-gids {value!r}: expected numeric gids")
                gids.append(int(part))
        process = ProcessConfig(args=args, env=env, cwd=opts.cwd, user=user,
                                additional_gids=gids)
        terminal = opts.tty
    _check_console(opts, terminal, "exec", detached=opts.detach)
    state = _state_name(container)
    if state in ("paused", "pausing") and not opts.ignore_paused:
        raise Failure(f"container {container_id!r}: exec: the container is {state}")
    if state != "running":
        raise Failure(f"container {container_id!r}: exec: cannot exec in a {state} container")
    forwarder = None if opts.detach else _Forwarder()
    try:
        started = container.start(_stdio(process, terminal, opts), reap=not opts.detach)
        pid, exits = started
        console = _hand_console(opts, started)
        if forwarder:
            forwarder.target(container, pid)
        if opts.pid_file:
            _write_pid_file(opts.pid_file, pid, f"container {container_id!r}: exec")
        if opts.detach:
            return 0
        return _exit_code(_wait(exits, console))
    finally:
        if forwarder:
            forwarder.restore()


def _merge_env(base, overrides):
    env = {}
    for item in list(base) + list(overrides):
        name, eq, _ = item.partition("=")
        if not eq or not name:
            raise Failure(f"--env {item!r}: expected NAME=value")
        env[name] = item
    return list(env.values())


def cmd_ps(g, log, opts, pos):
    import json
    container_id = _one_id(pos[:1], "ps")
    if opts.format not in ("table", "json"):
        raise UsageError(f"invalid format option {opts.format!r}: expected table or json")
    container = _load(g, container_id)
    pids = container.processes()
    if opts.format == "json":
        if len(pos) > 1:
            raise UsageError("ps: ps options cannot be used with --format json")
        print(json.dumps(pids))
        return 0
    import subprocess
    ps_args = pos[1:] or ["-ef"]
    try:
        out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise Failure(f"ps {' '.join(ps_args)}: {exc}") from None
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise Failure("ps: no PID column in the output of ps " + " ".join(ps_args))
    col = header.index("PID")
    wanted = set(pids)
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            print(line)
    return 0


def cmd_list(g, log, opts, pos):
    """Containers whose state cannot be read are left out, with a warning on stderr
    naming each and why (stdout stays what clients parse); `delete --force` removes them."""
    import json
    from .errors import ContainerError, ContainerNotExistError
    from .oci.state import state_document
    if pos:
        raise UsageError(f"list: unexpected arguments {pos}")
    if opts.format not in ("table", "json"):
        raise UsageError(f"invalid format option {opts.format!r}: expected table or json")
    factory = _factory(g)
    docs = []
    for container_id in factory.list():
        try:
            docs.append(state_document(factory.load(container_id)))
        except ContainerNotExistError:
            continue            # destroyed meanwhile, or being created
        except ContainerError as exc:
            log.warning(f"list: skipped container {container_id!r}: {exc.detail}")
    if opts.quiet:
        for d in docs:
            print(d["id"])
    elif opts.format == "json":
        print(json.dumps(docs))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [tuple(str(d[k]) for k in ("id", "pid", "status", "bundle", "created", "owner"))
                 for d in docs]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _wait_paused(container, timeout=10.0):
    import time
    deadline = time.monotonic() + timeout
    while True:
        state = _state_name(container)
        if state != "pausing":
            return state
        if time.monotonic() > deadline:
            raise Failure(f"container {container.id!r}: pause: still freezing after {timeout}s")
        time.sleep(0.001)


def cmd_pause(g, log, opts, pos):
    container = _load(g, _one_id(pos, "pause"))
    container.pause()
    _wait_paused(container)
    return 0


def cmd_resume(g, log, opts, pos):
    container = _load(g, _one_id(pos, "resume"))
    container.resume()
    return 0


def parse_duration(text):
    """Go's time.ParseDuration for what runc users type: 5s, 500ms, 1m30s, 2h; a bare
    number is seconds."""
    import re
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise UsageError(f"invalid duration {text!r}")
    return sum(float(a) * units[b] for a, b in parts)


def cmd_events(g, log, opts, pos):
    import json
    import time
    from .errors import ContainerError
    from .oci.events import stats_event
    container_id = _one_id(pos, "events")
    interval = parse_duration(opts.interval)
    if interval <= 0:
        raise UsageError("--interval must be positive")
    container = _load(g, container_id)
    if opts.stats:
        print(json.dumps(stats_event(container_id, container.stats())))
        return 0
    if hasattr(container, "events"):
        from .oci.events import to_oci_event
        for event in container.events(interval):
            print(json.dumps(to_oci_event(container_id, event)), flush=True)
        return 0
    # Without the library's event stream: stats every interval, and an "oom" event when
    # the cgroup's OOM kill count grows.
    ooms = None
    try:
        while True:
            stats = container.stats()
            kills = stats.cgroup_stats.memory_stats.oom_kills
            if ooms is not None and kills > ooms:
                print(json.dumps({"type": "oom", "id": container_id}), flush=True)
            ooms = kills
            print(json.dumps(stats_event(container_id, stats)), flush=True)
            if _state_name(container) == "stopped":
                return 0
            time.sleep(interval)
    except ContainerError:
        return 0               # deleted: the stream ends
    except KeyboardInterrupt:
        return 0


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_bytes(text, flag):
    """runc's (go-units RAMInBytes) sizes: 1024, 64m, 1.5g, 64MiB, 64MB (binary units);
    -1 is unlimited."""
    import re
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


def cmd_update(g, log, opts, pos):
    import dataclasses
    from .config import Resources
    container_id = _one_id(pos, "update")
    container = _load(g, container_id)
    changes = {}
    if opts.resources:
        from .oci.spec import _resources
        doc = _user_json(opts.resources, "--resources")
        if isinstance(doc, dict) and doc.get("devices"):
            raise Failure("linux.resources.devices: the device policy cannot be updated")
        resources, _ = _resources(doc, [])
        if resources is not None:
            changes = {k: v for k, v in dataclasses.asdict(resources).items() if v is not None}
    else:
        for flag in ("cpu_rt_period", "cpu_rt_runtime", "cpuset_mems",
                     "kernel_memory", "kernel_memory_tcp", "l3_cache_schema", "mem_bw_schema"):
            if opts[flag] not in (None, "", "0"):
                raise Failure(f"--{flag.replace('_', '-')}: not supported")
        if opts.memory is not None:
            changes["memory_limit"] = parse_bytes(opts.memory, "memory")
        if opts.memory_swap is not None:
            changes["memory_swap"] = parse_bytes(opts.memory_swap, "memory-swap")
        if opts.memory_reservation is not None:
            changes["memory_reservation"] = parse_bytes(opts.memory_reservation,
                                                        "memory-reservation")
        if opts.blkio_weight not in (None, "0"):
            changes["blkio_weight"] = _int_flag(opts.blkio_weight, "blkio-weight")
        for flag, key in (("cpu_share", "cpu_shares"), ("cpu_quota", "cpu_quota"),
                          ("cpu_period", "cpu_period"), ("pids_limit", "pids_limit")):
            if opts[flag] is not None:
                changes[key] = _int_flag(opts[flag], flag.replace("_", "-"))
        if opts.cpuset_cpus is not None:
            changes["cpuset_cpus"] = opts.cpuset_cpus
        if changes.get("pids_limit") is not None and changes["pids_limit"] <= 0:
            changes["pids_limit"] = -1
        if changes.get("memory_limit") == -1:
            raise Failure("--memory -1: lifting a memory limit is not supported")
    if not changes:
        return 0
    current = container.config.resources or Resources()
    container.set_resources(dataclasses.replace(current, **changes))
    return 0


def cmd_spec(g, log, opts, pos):
    import json
    from .oci.spec import default_spec
    if pos:
        raise UsageError(f"spec: unexpected arguments {pos}")
    bundle = opts.bundle or "."
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise Failure(f"File {path} exists. Remove it first")
    data = json.dumps(default_spec(rootless=opts.rootless), indent="\t")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise Failure(f"spec: {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(data)
    return 0


def cmd_features(g, log, opts, pos):
    import json
    from .oci.features import features
    if pos:
        raise UsageError(f"features: unexpected arguments {pos}")
    print(json.dumps(features(), indent="    "))
    return 0


_HANDLERS = {name: globals()[f"cmd_{name}"] for name in COMMANDS}


def _flag_help(flags):
    lines = []
    for f in flags:
        names = ", ".join(("--" if len(n) > 1 else "-") + n for n in f.names)
        lines.append(f"  {names}{' VALUE' if f.takes_value else ''}")
    return ("options:\n" + "\n".join(lines) + "\n") if lines else ""


# --- main ----------------------------------------------------------------------------------

def _version_text():
    from . import __version__
    from .oci.spec import OCI_VERSION
    return f"{PROG} version {__version__}\nspec: {OCI_VERSION}\n"


def _default_root():
    if os.geteuid() == 0:
        return "/run/pycontainer"
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    return os.path.join(runtime, "pycontainer")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    log = Log()
    try:
        try:
            g, rest = parse(argv, GLOBAL_FLAGS, stop_at_positional=True)
        except _Help:
            sys.stdout.write(USAGE)
            return 0
        if g.log_format not in ("text", "json"):
            raise UsageError(f"unknown log-format {g.log_format!r}: expected text or json")
        log = Log(g.log, g.log_format, g.debug)
        if g.version:
            sys.stdout.write(_version_text())
            return 0
        if not rest:
            raise UsageError("missing command")
        name, args = rest[0], rest[1:]
        if name == "help":
            sys.stdout.write(USAGE)
            return 0
        if name not in COMMANDS:
            raise UsageError(f"no such command {name!r}")
        if g.systemd_cgroup:
            raise Failure("--systemd-cgroup: not supported: pycontainer manages cgroupfs "
                          "directly (configure the client to use cgroupfs)")
        if g.criu:
            log.warning("--criu ignored: checkpoint/restore is not supported")
        if g.rootless not in ("auto", "true", "false"):
            raise UsageError(f"--rootless {g.rootless!r}: expected true, false or auto")
        if g.rootless != "auto" and (g.rootless == "true") != (os.geteuid() != 0):
            log.warning(f"--rootless={g.rootless} ignored: pycontainer runs rootless exactly "
                        "when it is not root")
        g["root"] = os.path.abspath(g.root or _default_root())
        flags, usage, stop = COMMANDS[name]
        try:
            opts, pos = parse(args, flags, stop_at_positional=stop)
        except _Help:
            sys.stdout.write(f"usage: {PROG} {usage}\n" + _flag_help(flags))
            return 0
        log.debug(f"{name} {args}")
        return _HANDLERS[name](g, log, opts, pos)
    except UsageError as exc:
        log.error(f"{PROG}: {exc} (see '{PROG} --help')")
        return 2
    except Failure as exc:
        log.error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from .errors import ContainerError
        from .oci.hooks import HookError
        if isinstance(exc, (ContainerError, HookError)):
            log.error(str(exc))
        elif isinstance(exc, OSError):
            log.error(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}")
        else:
            import traceback
            log.error(f"internal error: {type(exc).__name__}: {exc}")
            if log.debug_on:
                traceback.print_exc()
        return 1
