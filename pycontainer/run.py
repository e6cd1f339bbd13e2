"""pc.run and pc.run_async: subprocess.run's shape, each call in a container of its own.

One call: a container with a unique id in the factory's root (Factory() by default), one
process, its output read (both pipes drained together, as communicate does), the
container's final statistics, destroy. The container is destroyed however the call ends
(an error, a timeout, KeyboardInterrupt): nothing stays.

Without `config` (and `image`) the container runs on the built-in image, Config()'s:
the host's root bind-mounted read-only with fresh /proc, /dev, /sys and writable tmpfs
/tmp and /run, as `bwrap --ro-bind / / --tmpfs /tmp` gives. A sandbox that runs
whatever the host has, and can change none of it, is the safe reading of "no image".

Where subprocess inherits (stdout=None, stderr=None), run inherits too: the caller's
descriptors 1 and 2. stdin is /dev/null unless `input` or `stdin` is given: a sandboxed
program does not read the caller's terminal by accident.
"""
from __future__ import annotations

import dataclasses
import errno
import logging
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

from .config import DEVNULL, PIPE, Config, ProcessConfig, StdioTarget
from .container import Container
from .errors import ConfigInvalidError, ContainerSystemError
from .factory import Factory
from .image import Image
from .process import StartedProcess

__all__ = ["run", "run_async", "CompletedContainer", "RunStats"]

log = logging.getLogger("pycontainer")
_factory: Optional[Factory] = None


@dataclass(frozen=True)
class RunStats:
    """A finished container's totals: memory_peak (bytes; the cgroup's high-water mark),
    cpu_time (seconds, user and system), pids_peak (the most processes at once; None where
    the kernel does not count it: cgroup v1, or v2 before Linux 6.1), oom_kills."""

    memory_peak: int = 0
    cpu_time: float = 0.0
    pids_peak: Optional[int] = None
    oom_kills: int = 0


class CompletedContainer(subprocess.CompletedProcess):  # type: ignore[type-arg]
    """subprocess.CompletedProcess (args, returncode: negative for a signal, stdout,
    stderr, check_returncode()) plus `oom_killed` (the kernel's OOM killer killed a
    process of the container), `timed_out` (run's timeout killed it; then run raised
    subprocess.TimeoutExpired, whose `.result` this is), `stats` (RunStats) and `id`."""

    def __init__(self, args: Any, returncode: int, stdout: Any = None, stderr: Any = None,
                 *, oom_killed: bool = False, timed_out: bool = False,
                 stats: Optional[RunStats] = None, id: str = "") -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.oom_killed = oom_killed
        self.timed_out = timed_out
        self.stats = stats if stats is not None else RunStats()
        self.id = id

    def __repr__(self) -> str:
        extra = "".join(f", {k}=True" for k in ("oom_killed", "timed_out") if getattr(self, k))
        return (f"CompletedContainer(args={self.args!r}, returncode={self.returncode!r}, "
                f"stdout={self.stdout!r}, stderr={self.stderr!r}{extra})")


def _default_factory() -> Factory:
    global _factory
    if _factory is None:
        _factory = Factory()
    return _factory


def _config(config: Optional[Config], image: Optional[Image]) -> Config:
    if config is not None and not isinstance(config, Config):
        raise ConfigInvalidError("config", config, "expected a pycontainer.Config")
    if image is None:
        return config if config is not None else _HOST_IMAGE
    return dataclasses.replace(config if config is not None else Config(), image=image)


_HOST_IMAGE = Config()


def _process(args: Sequence[str], stdin: Any, input: Any, capture_output: bool,
             stdout: Any, stderr: Any, text: bool, encoding: Optional[str],
             errors: Optional[str], env: Any, cwd: Any, user: Optional[str]
             ) -> ProcessConfig:
    if input is not None:
        if stdin is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        stdin = PIPE
    if capture_output:
        if stdout is not None or stderr is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        stdout = stderr = PIPE
    return ProcessConfig(args=args, env=env, cwd=cwd, user=user,
                         stdin=DEVNULL if stdin is None else stdin,
                         stdout=1 if stdout is None else stdout,
                         stderr=2 if stderr is None else stderr,
                         text=text, encoding=encoding, errors=errors)


def _prepare(args: Sequence[str], config: Optional[Config], image: Optional[Image],
             stdin: Any, input: Any, capture_output: bool, stdout: Any, stderr: Any,
             text: bool, encoding: Optional[str], errors: Optional[str], env: Any, cwd: Any,
             user: Optional[str], factory: Optional[Factory]
             ) -> tuple[ProcessConfig, Config, Factory, str]:
    """What run and run_async check and choose before anything is made: the process, the
    Config, the factory and a fresh id."""
    process = _process(args, stdin, input, capture_output, stdout, stderr, text, encoding,
                       errors, env, cwd, user)
    return process, _config(config, image), factory or _default_factory(), _new_id()


def _new_id() -> str:
    return f"run-{secrets.token_hex(8)}"


# What a finished container's totals are read from, first file found in its cgroup dirs
# (v1 controllers' dirs, then the cgroup2 one): a handful of reads, not all of stats().
_TOTALS = {
    "memory_peak": (("memory.max_usage_in_bytes", None), ("memory.peak", None)),
    "limit_hits": (("memory.failcnt", None), ("memory.events", "max")),
    "oom_kills": (("memory.oom_control", "oom_kill"), ("memory.events", "oom_kill")),
    "cpu_ns": (("cpuacct.usage", None), ("cpu.stat", "usage_usec")),
    "pids_peak": (("pids.peak", None),),
}


def _totals(c: Container) -> dict[str, Optional[int]]:
    dirs = c.internal.cgroups.dirs()
    dirs = dirs[1:] + dirs[:1] if len(dirs) > 1 else dirs    # v2 last on a hybrid host
    out: dict[str, Optional[int]] = {}
    for name, sources in _TOTALS.items():
        out[name] = None
        for filename, key in sources:
            for d in dirs:
                try:
                    with open(os.path.join(d, filename), "rb") as f:
                        text = f.read().decode()
                except OSError:
                    continue
                if key is None:
                    value = int(text.split()[0]) if text.split()[0].isdigit() else None
                else:
                    fields = dict(line.split()[:2] for line in text.splitlines()
                                  if len(line.split()) >= 2)
                    value = int(fields[key]) if fields.get(key, "").isdigit() else None
                if value is not None:
                    if filename == "cpu.stat":
                        value *= 1000
                    out[name] = value
                    break
            if out[name] is not None:
                break
    return out


def _run_stats(totals: dict[str, Optional[int]]) -> RunStats:
    return RunStats(memory_peak=totals["memory_peak"] or 0,
                    cpu_time=(totals["cpu_ns"] or 0) / 1e9, pids_peak=totals["pids_peak"],
                    oom_kills=totals["oom_kills"] or 0)


def _start_failed(exc: ContainerSystemError, config: Config) -> BaseException:
    """A start that failed for want of memory under a memory limit, said as such."""
    limit = config.resources.memory_limit if config.resources is not None else None
    if exc.errno == errno.ENOMEM and limit is not None:
        return ContainerSystemError(
            errno.ENOMEM, f"the program could not start under the memory limit of {limit} "
            f"bytes ({exc.detail})", container_id=exc.container_id, operation="run")
    return exc


def _finish(c: Container, config: Config, p: StartedProcess, out: Any, err: Any,
            timed_out: bool, started: float) -> CompletedContainer:
    totals = _totals(c)
    stats = _run_stats(totals)
    status = p.returncode if p.returncode is not None else -signal.SIGKILL
    result = CompletedContainer(p.args, status, out, err, oom_killed=stats.oom_kills > 0,
                                timed_out=timed_out, stats=stats, id=c.id)
    limit = config.resources.memory_limit if config.resources is not None else None
    if status == 127 and not out and not err and limit is not None and \
            (totals["limit_hits"] or 0) > 0:
        # The program's exec ran out of memory after the point of no return: what is left
        # is the 127 of a process that never ran a line of it (and no output).
        raise ContainerSystemError(
            errno.ENOMEM, f"the program could not start under the memory limit of {limit} "
            "bytes (the limit was hit while it was loaded; exit status 127)",
            container_id=c.id, operation="run")
    log.debug("run %s: %s exited %s in %.1f ms", c.id, list(p.args)[:3], status,
              (time.monotonic() - started) * 1e3)
    return result


def _timed_out(exc: subprocess.TimeoutExpired, result: CompletedContainer
               ) -> subprocess.TimeoutExpired:
    exc.output, exc.stderr = result.stdout, result.stderr
    exc.result = result          # type: ignore[attr-defined]
    return exc


def _check(result: CompletedContainer, check: bool) -> CompletedContainer:
    if check and result.returncode:
        raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout,
                                            result.stderr)
    return result


def _close(p: Optional[StartedProcess]) -> None:
    if p is not None:
        for f in (p.stdin, p.stdout, p.stderr):
            if f is not None and not f.closed:
                try:
                    f.close()
                except BrokenPipeError:
                    pass


def run(args: Sequence[str], *, config: Optional[Config] = None,
        image: Optional[Image] = None,
        stdin: StdioTarget = None, input: Union[bytes, str, None] = None,
        capture_output: bool = False, stdout: StdioTarget = None, stderr: StdioTarget = None,
        text: bool = False, encoding: Optional[str] = None, errors: Optional[str] = None,
        timeout: Optional[float] = None, check: bool = False,
        env: Union[None, Sequence[str], Mapping[str, str]] = None,
        cwd: Union[None, str, "os.PathLike[str]"] = None, user: Optional[str] = None,
        factory: Optional[Factory] = None) -> CompletedContainer:
    """subprocess.run in a container of its own (see the module docstring): returns a
    CompletedContainer; `timeout` kills the whole container and raises
    subprocess.TimeoutExpired (output so far; `.result`: the CompletedContainer);
    check=True raises subprocess.CalledProcessError on a non-zero status."""
    started = time.monotonic()
    process, config, factory, cid = _prepare(args, config, image, stdin, input,
                                             capture_output, stdout, stderr, text, encoding,
                                             errors, env, cwd, user, factory)
    c: Optional[Container] = None
    p: Optional[StartedProcess] = None
    try:
        c = factory.create(cid, config)
        try:
            p = c.start(process)
        except ContainerSystemError as exc:
            raise _start_failed(exc, config) from None
        try:
            out, err = p.communicate(input, timeout)
        except subprocess.TimeoutExpired as exc:
            p.kill()         # the init: the kernel kills the rest of its pid namespace
            out, err = p.communicate()
            raise _timed_out(exc, _finish(c, config, p, out, err, True, started)) from None
        return _check(_finish(c, config, p, out, err, False, started), check)
    finally:
        _close(p)
        if c is not None:
            c.destroy()
        else:
            factory.destroy(cid)     # interrupted inside create: whatever it left


async def run_async(args: Sequence[str], *, config: Optional[Config] = None,
                    image: Optional[Image] = None, stdin: StdioTarget = None,
                    input: Union[bytes, str, None] = None, capture_output: bool = False,
                    stdout: StdioTarget = None, stderr: StdioTarget = None, text: bool = False,
                    encoding: Optional[str] = None, errors: Optional[str] = None,
                    timeout: Optional[float] = None, check: bool = False,
                    env: Union[None, Sequence[str], Mapping[str, str]] = None,
                    cwd: Union[None, str, "os.PathLike[str]"] = None,
                    user: Optional[str] = None,
                    factory: Optional[Factory] = None) -> CompletedContainer:
    """run() for asyncio: the process started with start_async, its pipes and exit
    watched by the loop (no thread waits for it); create, statistics and destroy hop to
    pycontainer's worker thread (Factory.create_async and friends)."""
    import asyncio
    from .aio import off_loop
    started = time.monotonic()
    process, config, factory, cid = _prepare(args, config, image, stdin, input,
                                             capture_output, stdout, stderr, text, encoding,
                                             errors, env, cwd, user, factory)
    loop = asyncio.get_running_loop()
    c: Optional[Container] = None
    p: Optional[StartedProcess] = None
    try:
        c = await factory.create_async(cid, config)
        try:
            p = await c.start_async(process)
        except ContainerSystemError as exc:
            raise _start_failed(exc, config) from None
        timed_out = False
        try:
            out, err = await asyncio.wait_for(p.communicate_async(input), timeout)
        except asyncio.TimeoutError:
            timed_out = True
            p.kill()
            out, err = await p.communicate_async()
        result = await off_loop(loop, _finish, c, config, p, out, err, timed_out, started)
        if timed_out:
            raise _timed_out(subprocess.TimeoutExpired(p.args, timeout),  # type: ignore
                             result)
        return _check(result, check)
    finally:
        _close(p)
        destroy = c.destroy if c is not None else (lambda: factory.destroy(cid))
        await off_loop(loop, destroy)       # runs to the end even if we are cancelled
