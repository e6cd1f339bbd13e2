"""`pycontainer`: a runc-compatible command line over Factory and Container.

    pycontainer [global options] command [command options] [arguments...]

Flags are spelled as runc spells them and parsed as runc's parser does: one or two dashes
(`-bundle x`, `--bundle=x`), a value in the same word after '=' or in the next word,
flags before or after the positional arguments (but `exec` and `ps` stop at the first
one: what follows the id is the command), and `--` ending the flags.

Everything a command does to containers is oci.runtime's; this module is the command line
around it: the grammar, logging, the command table, signal forwarding, the terminal relay
and exit codes.

Startup is part of the interface (podman and containerd run this for every operation), so
this module imports only os, sys and oci.runtime (which imports only os and sys itself) at
load time; each command imports what it needs.
"""
from __future__ import annotations

import os
import sys

from .oci import runtime as oci_runtime
from .oci.runtime import Failure

__all__ = ["main", "entry"]

PROG = "pycontainer"
DEFAULT_LOG_FORMAT = "text"


class UsageError(Exception):
    """A bad command line: unknown command or flag, missing argument."""


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

_CREATE = [V("bundle|b", help="the bundle directory (default: the current directory)"),
           V("console-socket", help="a unix socket that receives the pty master (terminal)"),
           V("pid-file", help="write the init's pid to this file"),
           B("no-pivot", help="accepted for runc compatibility; pivot_root is always used"),
           B("no-new-keyring", help="accepted for runc compatibility"),
           V("preserve-fds", "0", help="pass N descriptors after stdio (3..3+N-1) through")]
_UPDATE = [V("resources|r", help="a JSON file (or - for stdin) of linux.resources"),
           V("blkio-weight", help="blkio weight (10-1000)"),
           V("cpu-period", help="CFS period (microseconds)"),
           V("cpu-quota", help="CFS quota (microseconds)"),
           V("cpu-share", help="CPU shares (relative weight)"),
           V("cpu-rt-period", help="refused: no realtime limits"),
           V("cpu-rt-runtime", help="refused: no realtime limits"),
           V("cpuset-cpus", help="CPUs to run on (e.g. 0-1)"),
           V("cpuset-mems", help="memory nodes to allocate from (e.g. 0)"),
           V("memory", help="memory limit (bytes, or with k/m/g)"),
           V("memory-reservation", help="memory soft limit"),
           V("memory-swap", help="memory plus swap limit"),
           V("kernel-memory", help="refused: kernel memory limits are gone from Linux"),
           V("kernel-memory-tcp", help="refused: kernel memory limits are gone from Linux"),
           V("pids-limit", help="maximum number of processes"),
           V("l3-cache-schema", help="not supported (no resctrl)"),
           V("mem-bw-schema", help="not supported (no resctrl)")]

# name -> (flags, usage, stop flags at the first positional)
COMMANDS = {
    "create": (_CREATE, "create [command options] <container-id>", False),
    "start": ([], "start <container-id>", False),
    "run": (_CREATE + [B("detach|d", help="return once the container runs"),
                       B("keep", help="keep the container's state after it exits"),
                       B("rm", help="delete the container after it exits (the default)"),
                       B("no-subreaper", help="accepted for runc compatibility")],
            "run [command options] <container-id> [-- args...]", False),
    "state": ([], "state <container-id>", False),
    "kill": ([B("all|a", help="signal every process of the container")],
             "kill [--all] <container-id> [signal]", False),
    "delete": ([B("force|f", help="kill a running container first")],
               "delete [--force] <container-id>", False),
    "exec": ([V("console-socket", help="a unix socket that receives the pty master"),
              V("cwd", help="working directory in the container"),
              M("env|e", help="set an environment variable (KEY=VALUE; repeatable)"),
              B("tty|t", help="allocate a pseudo-terminal"),
              V("user|u", help="uid[:gid] to run as"),
              M("additional-gids|g", help="an additional group id (repeatable)"),
              V("process|p", help="a process.json (OCI process) instead of the arguments"),
              B("detach|d", help="do not wait for the process"),
              V("pid-file", help="write the process's pid to this file"),
              V("process-label", help="refused: no SELinux labels"),
              V("apparmor", help="refused: no AppArmor profiles"),
              B("no-new-privs", help="set no_new_privs for the process"),
              M("cap|c", help="refused: a process gets the container's capabilities"),
              V("preserve-fds", "0", help="pass N descriptors after stdio through"),
              V("cgroup", help="refused: no sub-cgroups for exec"),
              B("ignore-paused", help="accepted for runc compatibility")],
             "exec [command options] <container-id> <command> [args...]", True),
    "ps": ([V("format|f", "table", help="'table' or 'json' (pids)")],
           "ps [--format table|json] <container-id> [ps options]", True),
    "list": ([V("format|f", "table", help="'table' or 'json'"),
              B("quiet|q", help="print ids only")], "list [--format table|json] [-q]", False),
    "pause": ([], "pause <container-id>", False),
    "resume": ([], "resume <container-id>", False),
    "events": ([V("interval", "5s", help="how often to sample (e.g. 5s)"),
                B("stats", help="print the statistics once and exit")],
               "events [--stats] [--interval 5s] <container-id>", False),
    "update": (_UPDATE, "update [command options] <container-id>", False),
    "spec": ([V("bundle|b", help="where to write config.json"),
              B("rootless", help="a spec for a rootless container")],
             "spec [--rootless] [--bundle dir]", False),
    "features": ([], "features", False),
}

USAGE = f"""usage: {PROG} [global options] command [command options] [arguments...]

A runc-compatible OCI runtime built on the pycontainer library.

commands: {', '.join(COMMANDS)} (`{PROG} COMMAND --help` for each)
"""


# --- logging -------------------------------------------------------------------------------

class Log:
    """runc's logging: to --log (default stderr) as text or JSON lines.

    The log file never depends on stderr: a containerd shim gives a task without stdio a
    read-only /dev/null as stderr, and reads only the --log file for the error. A write to
    stderr that fails is ignored (there is nowhere else to say so)."""

    def __init__(self, path=None, fmt=DEFAULT_LOG_FORMAT, debug=False):
        self.path = path
        self.fmt = fmt
        self.debug_on = debug

    def _write(self, level, msg):
        """The entry in the log file; on stderr when there is none or it cannot be
        written."""
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
        if self.path is not None:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                             0o644)
                try:
                    os.write(fd, data)
                    return
                finally:
                    os.close(fd)
            except OSError:
                pass
        _to_stderr(data)

    def debug(self, msg):
        if self.debug_on:
            self._write("debug", msg)

    def warning(self, msg):
        if self.path is None:
            _to_stderr(f"{PROG}: warning: {_one_line(msg)}\n".encode())
        else:
            self._write("warning", _one_line(msg))

    def error(self, msg):
        """The log entry when there is a log file (first: it is what a shim reads), and the
        one line on stderr."""
        msg = _one_line(msg)
        if self.path is not None:
            self._write("error", msg)
        _to_stderr((msg + "\n").encode())


def _to_stderr(data):
    """os.write to stderr, ignoring that it fails (closed, read-only, a broken pipe)."""
    try:
        os.write(2, data)
    except OSError:
        pass


def _one_line(msg):
    return " ".join(str(msg).split("\n")).strip()


# --- helpers ---------------------------------------------------------------------------------

def _runtime(g, log):
    return oci_runtime.Runtime(g.root, log, nest_cgroups=g.nest_cgroups)


def _one_id(pos, usage, extra_ok=False):
    if not pos:
        raise UsageError(f"{usage}: missing <container-id>")
    if len(pos) > 1 and not extra_ok:
        raise UsageError(f"{usage}: unexpected arguments {pos[1:]}")
    return pos[0]


def _preserve_fds(opts):
    """--preserve-fds N as a number (the runtime checks the descriptors are open)."""
    try:
        n = int(opts.preserve_fds)
    except ValueError:
        raise UsageError(f"invalid value {opts.preserve_fds!r} for --preserve-fds") from None
    if n < 0:
        raise UsageError("--preserve-fds must not be negative")
    return n


def _creation_flags(log, opts):
    """The flags of create and run that pycontainer takes but has no use for."""
    if opts.no_pivot:
        log.warning("--no-pivot ignored: pycontainer always uses pivot_root")
    if opts.no_new_keyring:
        log.debug("--no-new-keyring: pycontainer does not make session keyrings")


def _exit_code(status):
    if status is None:
        return 0
    return 128 - status if status < 0 else status


# --- signal forwarding and the terminal relay ------------------------------------------------

_FORWARDED = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM",
              "SIGCONT", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGWINCH", "SIGPWR")


class _Forwarder:
    """Forwards the signals this process gets to the container's process, as runc does in
    the foreground. Installed before the container exists, so a signal that comes while
    it is being made is not lost (nor kills us and orphans it): it is held and delivered
    once there is a process to deliver it to (target(send), send(signum) delivering)."""

    def __init__(self):
        import signal
        self.send = None
        self.pending = []
        self.old = {}
        for name in _FORWARDED:
            sig = getattr(signal, name, None)
            if sig is not None:
                self.old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        if self.send is None:
            self.pending.append(signum)
        else:
            self._send(signum)

    def _send(self, signum):
        try:
            self.send(signum)
        except Exception:
            pass

    def target(self, send):
        self.send = send
        pending, self.pending = self.pending, []
        for signum in pending:
            self._send(signum)

    def restore(self):
        import signal
        for sig, handler in self.old.items():
            signal.signal(sig, handler)
        self.old = {}


def _wait(running):
    """The exit status of a Running process, waiting in slices so signal handlers run
    promptly. With a terminal master, our stdio is relayed to it until the process hangs
    up."""
    import queue
    if running.console is not None:
        _relay(running.console)
    while True:
        try:
            return running.exits.get(timeout=0.5)
        except queue.Empty:
            continue


def _relay(master, stdin=0, stdout=1):
    """Copy stdin to the terminal and the terminal to stdout until the process side hangs
    up (EIO on the master). A tty stdin is put in raw mode meanwhile, so keys such as ^C
    reach the container's terminal instead of us. Closes master."""
    import select
    import termios
    import tty
    saved = None
    if os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
    watched = [master, stdin]
    try:
        while True:
            ready, _, _ = select.select(watched, [], [])
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:         # EIO: every holder of the peer has gone
                    return
                if not data:
                    return
                os.write(stdout, data)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if data:
                    os.write(master, data)
                else:
                    watched.remove(stdin)   # our stdin ended; the process keeps its terminal
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(master)


# --- argument values -------------------------------------------------------------------------

def parse_signal(text):
    """A signal number from a number or a name (KILL, SIGKILL, RTMIN+3), as runc takes it.
    From _signal, not signal: signal builds an enum of the names, and importing enum costs
    more than a `kill` does."""
    import _signal
    rtmin, rtmax = _signal.SIGRTMIN, _signal.SIGRTMAX
    value = text.strip()
    if value.isdigit():
        num = int(value)
        if not 1 <= num <= rtmax:
            raise Failure(f"invalid signal {text!r}")
        return num
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith("SIGRTMIN+") or name.startswith("SIGRTMAX-"):
        base, _, off = name[3:].partition("+" if "+" in name else "-")
        if off.isdigit():
            num = (rtmin + int(off)) if base == "RTMIN" else (rtmax - int(off))
            if rtmin <= num <= rtmax:
                return num
    # signal.Signals' members: the SIG* names of _signal (aliases such as SIGIOT too).
    num = getattr(_signal, name, None) if not name.startswith("SIG_") else None
    if not isinstance(num, int) or isinstance(num, bool) or not name.isupper():
        raise Failure(f"unknown signal {text!r}")
    return num


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


def _format(opts):
    if opts.format not in ("table", "json"):
        raise UsageError(f"invalid format option {opts.format!r}: expected table or json")
    return opts.format


# --- the commands ----------------------------------------------------------------------------

def cmd_create(g, log, opts, pos):
    container_id = _one_id(pos, "create")
    n = _preserve_fds(opts)
    _creation_flags(log, opts)
    _runtime(g, log).create(container_id, opts.bundle, console_socket=opts.console_socket,
                            pid_file=opts.pid_file, preserve_fds=n)
    return 0


def cmd_start(g, log, opts, pos):
    _runtime(g, log).start(_one_id(pos, "start"))
    return 0


def cmd_run(g, log, opts, pos):
    container_id = _one_id(pos, "run", extra_ok=True)
    n = _preserve_fds(opts)
    _creation_flags(log, opts)
    if opts.detach and (opts.rm or opts.keep):
        raise UsageError("--rm and --keep do not go with --detach")
    runtime = _runtime(g, log)
    forwarder = None if opts.detach else _Forwarder()
    try:
        running = runtime.run(container_id, opts.bundle, args=pos[1:] or None,
                              detach=opts.detach, console_socket=opts.console_socket,
                              pid_file=opts.pid_file, preserve_fds=n,
                              on_exec=forwarder.target if forwarder else None)
        if opts.detach:
            return 0
        status = _wait(running)
    finally:
        if forwarder:
            forwarder.restore()
    if not opts.keep:
        runtime.remove(running)
    return _exit_code(status)


def cmd_exec(g, log, opts, pos):
    container_id = _one_id(pos[:1], "exec")
    args = pos[1:]
    n = _preserve_fds(opts)
    for flag in ("process_label", "apparmor", "cgroup"):
        if opts[flag]:
            raise Failure(f"--{flag.replace('_', '-')}: not supported")
    if opts.cap:
        raise Failure("--cap: exec'd processes get the container's capabilities; adding "
                      "some per process is not supported")
    if opts.process and args:
        raise UsageError("exec: --process and a command do not go together")
    if not opts.process and not args:
        raise UsageError("exec: missing <command> (or --process)")
    forwarder = None if opts.detach else _Forwarder()
    try:
        running = _runtime(g, log).exec(
            container_id, args, process_file=opts.process, env=opts.env, cwd=opts.cwd,
            user=opts.user, additional_gids=opts.additional_gids, tty=opts.tty,
            no_new_privs=opts.no_new_privs, detach=opts.detach,
            ignore_paused=opts.ignore_paused, console_socket=opts.console_socket,
            pid_file=opts.pid_file, preserve_fds=n,
            on_exec=forwarder.target if forwarder else None)
        if opts.detach:
            return 0
        return _exit_code(_wait(running))
    finally:
        if forwarder:
            forwarder.restore()


def cmd_state(g, log, opts, pos):
    from . import cjson                  # json's output without importing json (and re)
    print(cjson.dumps(_runtime(g, log).state(_one_id(pos, "state")), indent=2))
    return 0


def cmd_kill(g, log, opts, pos):
    container_id = _one_id(pos[:1], "kill")
    if len(pos) > 2:
        raise UsageError(f"kill: unexpected arguments {pos[2:]}")
    sig = parse_signal(pos[1] if len(pos) > 1 else "SIGTERM")
    _runtime(g, log).kill(container_id, sig, all=opts.all)
    return 0


def cmd_delete(g, log, opts, pos):
    _runtime(g, log).delete(_one_id(pos, "delete"), force=opts.force)
    return 0


def cmd_ps(g, log, opts, pos):
    import json
    container_id = _one_id(pos[:1], "ps")
    if _format(opts) == "json":
        pids = _runtime(g, log).pids(container_id)
        if len(pos) > 1:
            raise UsageError("ps: ps options cannot be used with --format json")
        print(json.dumps(pids))
        return 0
    for line in _runtime(g, log).ps(container_id, pos[1:]):
        print(line)
    return 0


def cmd_list(g, log, opts, pos):
    """Containers whose state cannot be read are left out, with a warning on stderr
    naming each and why (stdout stays what clients parse); `delete --force` removes them."""
    from . import cjson                  # as in cmd_state
    if pos:
        raise UsageError(f"list: unexpected arguments {pos}")
    fmt = _format(opts)
    docs = _runtime(g, log).list()
    if opts.quiet:
        for d in docs:
            print(d["id"])
    elif fmt == "json":
        print(cjson.dumps(docs))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [tuple(str(d[k]) for k in ("id", "pid", "status", "bundle", "created", "owner"))
                 for d in docs]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def cmd_pause(g, log, opts, pos):
    _runtime(g, log).pause(_one_id(pos, "pause"))
    return 0


def cmd_resume(g, log, opts, pos):
    _runtime(g, log).resume(_one_id(pos, "resume"))
    return 0


def cmd_events(g, log, opts, pos):
    import json
    container_id = _one_id(pos, "events")
    interval = parse_duration(opts.interval)
    if interval <= 0:
        raise UsageError("--interval must be positive")
    runtime = _runtime(g, log)
    if opts.stats:
        print(json.dumps(runtime.stats_event(container_id)))
        return 0
    try:
        for doc in runtime.events(container_id, interval):
            print(json.dumps(doc), flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_update(g, log, opts, pos):
    container_id = _one_id(pos, "update")
    flags = {k: v for k, v in opts.items() if k != "resources"}
    _runtime(g, log).update(container_id, opts.resources, flags)
    return 0


def cmd_spec(g, log, opts, pos):
    import json
    if pos:
        raise UsageError(f"spec: unexpected arguments {pos}")
    path = os.path.join(opts.bundle or ".", "config.json")
    if os.path.exists(path):
        raise Failure(f"File {path} exists. Remove it first")
    data = json.dumps(oci_runtime.default_spec(rootless=opts.rootless), indent="\t")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise Failure(f"spec: {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(data)
    return 0


def cmd_features(g, log, opts, pos):
    import json
    if pos:
        raise UsageError(f"features: unexpected arguments {pos}")
    print(json.dumps(oci_runtime.features(), indent="    "))
    return 0


_HANDLERS = {name: globals()[f"cmd_{name}"] for name in COMMANDS}


def _flag_help(flags):
    lines = []
    for f in flags:
        names = ", ".join(("--" if len(n) > 1 else "-") + n for n in f.names)
        flag = f"  {names}{' VALUE' if f.takes_value else ''}"
        lines.append(f"{flag:<28} {f.help}".rstrip() if f.help else flag)
    return ("options:\n" + "\n".join(lines) + "\n") if lines else ""


# --- main ----------------------------------------------------------------------------------

def _version_text():
    version, spec = oci_runtime.versions()
    return f"{PROG} version {version}\nspec: {spec}\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    log = Log()
    try:
        try:
            g, rest = parse(argv, GLOBAL_FLAGS, stop_at_positional=True)
        except _Help:
            sys.stdout.write(USAGE + "global " + _flag_help(GLOBAL_FLAGS))
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
            sys.stdout.write(USAGE + "global " + _flag_help(GLOBAL_FLAGS))
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
        if g.root:
            g["root"] = os.path.abspath(g.root)     # else the factory's default root
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
        if isinstance(exc, ContainerError):
            log.error(str(exc))
            return 1
        from .oci.hooks import HookError
        if isinstance(exc, HookError):
            log.error(str(exc))
        elif isinstance(exc, OSError):
            log.error(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}")
        else:
            import traceback
            log.error(f"internal error: {type(exc).__name__}: {exc}")
            if log.debug_on:
                _to_stderr(traceback.format_exc().encode())
        return 1


def entry():
    """The `pycontainer` program (the console script, `python -m pycontainer`): main(),
    then the process ends at once. The interpreter's own teardown (freeing every module
    and object one by one) would cost more than most commands; nothing of ours needs it:
    output goes through os.write or sys.stdout/stderr, flushed here, files are closed
    where they are written, and the library registers no atexit work a command needs."""
    code = main()
    try:
        sys.stdout.flush()
    except (OSError, ValueError):           # a closed or broken pipe: as sys.exit would
        code = code or 120
    try:
        sys.stderr.flush()
    except (OSError, ValueError):           # ignored, as Log ignores it (a shim's stderr
        pass                                # is a read-only /dev/null)
    os._exit(code)
