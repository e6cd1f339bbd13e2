"""OCI hooks: what they are (parsed from config.json) and running them.

A hook is a program run by the runtime at a point of the container's lifecycle with the
container's state document on its stdin. Its `path` is absolute, `args` is its whole argv
(argv[0] included, as execve takes it; empty means [path]), `env` its whole environment,
and `timeout` (seconds) the most it may take before it is killed and counts as failed.

The runtime-side hooks are run here: prestart and createRuntime (after create, before the
user's program starts; a failure aborts the create), poststart (after start; a failure is
a warning) and poststop (after delete; a failure is a warning). createContainer (after
createRuntime) and startContainer (at start, before the program runs) run in the
container's namespaces, through Container.run_hook: createContainer with the path
resolved on the host (our mount namespace: the container's root is pivoted already, where
runc would run it just before pivot_root), privileged as in runc; startContainer inside the
container, with the container's capabilities, no_new_privs and seccomp filter, as runc
runs it from the init: the image chose that program.
"""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass

from ..errors import ContainerError
from . import reader as r

__all__ = ["Hook", "Hooks", "HookError", "parse_hooks", "hooks_to_oci", "run_hooks"]

# The OCI names, in lifecycle order, and the attribute each is kept in.
HOOK_NAMES = (("prestart", "prestart"), ("createRuntime", "create_runtime"),
              ("createContainer", "create_container"), ("startContainer", "start_container"),
              ("poststart", "poststart"), ("poststop", "poststop"))


class HookError(Exception):
    """A hook failed: it exited non-zero, was killed, timed out, or could not be run."""


@dataclass(frozen=True)
class Hook:
    path: str
    args: tuple = ()
    env: tuple = ()
    timeout: int | None = None

    def to_oci(self):
        d = {"path": self.path}
        if self.args:
            d["args"] = list(self.args)
        if self.env:
            d["env"] = list(self.env)
        if self.timeout is not None:
            d["timeout"] = self.timeout
        return d


@dataclass(frozen=True)
class Hooks:
    prestart: tuple = ()
    create_runtime: tuple = ()
    create_container: tuple = ()
    start_container: tuple = ()
    poststart: tuple = ()
    poststop: tuple = ()

    def __bool__(self):
        return any(getattr(self, attr) for _, attr in HOOK_NAMES)


def _hook(value, path):
    d = r.obj(value, path, {"path", "args", "env", "timeout"}, required=("path",))
    hook_path = r.string(d, path, "path", absolute=True)
    args = r.strings(d, path, "args", [])
    env = r.strings(d, path, "env", [])
    for i, item in enumerate(env):
        if "=" not in item or item.startswith("="):
            r.fail(r.join(r.join(path, "env"), i), item, "expected NAME=value")
    timeout = r.integer(d, path, "timeout", None, lo=1, hi=1 << 31)
    return Hook(hook_path, tuple(args), tuple(env), timeout)


def parse_hooks(value, path="hooks", refuse=()):
    """The `hooks` object. Hooks of a kind in `refuse` that are present (non-empty) are
    an error: the runtime could not honour them."""
    if value is None:
        return Hooks()
    d = r.obj(value, path, {name for name, _ in HOOK_NAMES})
    out = {}
    for name, attr in HOOK_NAMES:
        items = r.array(d, path, name, [])
        where = r.join(path, name)
        if items and name in refuse:
            r.fail(where, items, f"{name} hooks run inside the container's namespaces from its "
                   "init before the program starts; pycontainer does not support them yet")
        out[attr] = tuple(_hook(item, r.join(where, i)) for i, item in enumerate(items))
    return Hooks(**out)


def hooks_to_oci(hooks):
    out = {}
    for name, attr in HOOK_NAMES:
        items = getattr(hooks, attr)
        if items:
            out[name] = [h.to_oci() for h in items]
    return out


def run_hooks(hooks, state_json, kind, warn=None, container=None, mount=True):
    """Run every hook in `hooks` (a tuple of Hook) in order with `state_json` (str) on
    stdin. The first failure raises HookError, unless `warn` is given: then every hook runs
    and each failure is passed to warn(message) (poststart and poststop). With a
    `container`, in its namespaces (Container.run_hook, `mount` as there)."""
    data = state_json.encode() if isinstance(state_json, str) else state_json
    for i, hook in enumerate(hooks):
        try:
            if container is None:
                _run_one(hook, data, f"{kind}[{i}]")
            else:
                _run_in(container, mount, hook, data, f"{kind}[{i}]")
        except HookError as exc:
            if warn is None:
                raise
            warn(str(exc))


def _run_one(hook, data, where):
    argv = list(hook.args) or [hook.path]
    env = dict(item.split("=", 1) for item in hook.env)
    try:
        proc = subprocess.Popen(argv, executable=hook.path, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                close_fds=True, cwd="/", start_new_session=True)
    except OSError as exc:
        raise HookError(f"hook {where} {hook.path}: {os.strerror(exc.errno)}") from None
    try:
        _, err = proc.communicate(data, timeout=hook.timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise HookError(f"hook {where} {hook.path}: timed out after {hook.timeout}s") from None
    except BaseException:
        _kill_group(proc)
        raise
    _check_status(proc.returncode, err, hook, where)


def _run_in(container, mount, hook, data, where):
    try:
        status, err = container.run_hook([hook.path, *hook.args[1:]], hook.env, data,
                                         hook.timeout, mount=mount)
    except ContainerError as exc:
        raise HookError(f"hook {where} {hook.path}: {exc.detail}") from None
    _check_status(status, err, hook, where)


def _check_status(status, err, hook, where):
    """HookError unless status (an exits-queue status: code, or -signal) is 0."""
    if status == 0:
        return
    how = (f"killed by signal {-status}" if status is not None and status < 0
           else f"exit status {status}")
    if hook.timeout is not None and status == -9:
        how += f" (timeout {hook.timeout}s)"
    detail = err.decode(errors="replace").strip().splitlines()
    tail = f": {detail[-1]}" if detail else ""
    raise HookError(f"hook {where} {hook.path}: {how}{tail}")


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.communicate()
