"""StartedProcess: what Container.start, stage and start_async return, a handle like
subprocess.Popen; and Stdio, the pipes a start makes where ProcessConfig asks for PIPE.

Its own module so that pycontainer.aio (which makes one with an asyncio future for exits)
and pycontainer.container (which makes one with an exit watcher queue) both depend on it
rather than on each other.

Signals go through the pidfd that the exit watcher or the event loop reaps the process
through, while they hold it (exits.ExitWatcher.signal, aio): a pid reused after the exit
is never hit, and a signal after the exit does nothing, as Popen's.
"""
from __future__ import annotations

import io
import locale
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, Callable, Optional, Union

from .config import ProcessConfig
from .exits import ExitQueue

if TYPE_CHECKING:
    import asyncio      # at run time only where used: the command line never needs it

__all__ = ["StartedProcess", "Stdio"]

_Exits = Union[ExitQueue, "asyncio.Future[Optional[int]]", None]


class Stdio:
    """The pipes of one start, made where the ProcessConfig asks for subprocess.PIPE:
    `child` (the process's ends, for stdio_fds(); closed after the spawn) and `ours`
    (stdin's write end, stdout's and stderr's read ends; None where no pipe was asked)."""

    __slots__ = ("child", "ours")

    def __init__(self, process: ProcessConfig):
        self.child: list[Optional[int]] = [None, None, None]
        self.ours: list[Optional[int]] = [None, None, None]
        try:
            for i, piped in enumerate(process.pipes()):
                if piped:
                    r, w = os.pipe2(os.O_CLOEXEC)
                    self.child[i], self.ours[i] = (r, w) if i == 0 else (w, r)
        except BaseException:
            self.close()
            raise

    def close_child(self) -> None:
        for i, fd in enumerate(self.child):
            if fd is not None:
                os.close(fd)
                self.child[i] = None

    def close(self) -> None:
        """Close every end (a start that failed)."""
        self.close_child()
        for i, fd in enumerate(self.ours):
            if fd is not None:
                os.close(fd)
                self.ours[i] = None


def _files(ours: Sequence[Optional[int]], process: Optional[ProcessConfig]
           ) -> list[Optional[IO[Any]]]:
    """Our pipe ends as files, in text mode as subprocess makes them."""
    files: list[Optional[IO[Any]]] = []
    text = process is not None and process.text_mode
    for i, fd in enumerate(ours):
        if fd is None:
            files.append(None)
            continue
        f: IO[Any] = io.open(fd, "wb" if i == 0 else "rb")
        if text:
            assert process is not None
            f = io.TextIOWrapper(f, encoding=_encoding(process), errors=process.errors,
                                 write_through=True)     # type: ignore[arg-type]
        files.append(f)
    return files


def _encoding(process: ProcessConfig) -> str:
    return process.encoding or locale.getpreferredencoding(False)


def _decode(data: bytes, process: ProcessConfig) -> str:
    """As subprocess decodes communicate()'s output: universal newlines."""
    text = data.decode(_encoding(process), process.errors or "strict")
    return text.replace("\r\n", "\n").replace("\r", "\n")


class StartedProcess(tuple):
    """A started process. Still the pair (pid, exits) start() always returned, with
    `.console`, the master of its pty (a descriptor the caller owns and closes) when its
    ProcessConfig asked for a terminal, else None. `exits`: a queue.Queue (start, stage:
    an exits.ExitQueue), an asyncio future (start_async), or None (reap=False).

    And a handle like subprocess.Popen: `wait(timeout)`, `poll()`, `returncode` (None while
    it runs; the exit code, or -signum), `send_signal()`/`terminate()`/`kill()`,
    `communicate(input, timeout)`, and `.stdin`/`.stdout`/`.stderr`, the files of the
    pipes that ProcessConfig(...=subprocess.PIPE) asked for (text files with text=True).
    The status stays known after someone took it from `exits`."""

    pid: int
    exits: _Exits

    def __new__(cls, pid: int, exits: _Exits, console: Optional[int] = None, *,
                signal: Optional[Callable[[int], None]] = None,
                stdio: Optional[Stdio] = None,
                process: Optional[ProcessConfig] = None) -> "StartedProcess":
        started = super().__new__(cls, (pid, exits))
        started.console = console
        started.args = tuple(process.args) if process is not None else ()
        started._process = process
        started._signal = signal
        started._returncode = None
        started._read = {}              # fd -> bytes read by communicate() so far
        started._input = None           # memoryview of what communicate() has yet to write
        started.stdin, started.stdout, started.stderr = _files(
            stdio.ours if stdio is not None else (None,) * 3, process)
        return started

    pid = property(lambda self: self[0])          # type: ignore[assignment]
    exits = property(lambda self: self[1])        # type: ignore[assignment]

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"returncode={self.returncode}"
        return f"<StartedProcess pid={self.pid} {state} args={list(self.args)!r}>"

    # -- the status ------------------------------------------------------------------

    @property
    def returncode(self) -> Optional[int]:
        """The exit code, -signum when a signal killed it, None while it runs."""
        if self._returncode is None:
            exits = self[1]
            if isinstance(exits, ExitQueue):
                if exits.exited.is_set():
                    self._exited(exits.status)
            elif exits is not None and exits.done() and not exits.cancelled() \
                    and exits.exception() is None:
                self._exited(exits.result())
        return self._returncode

    def _exited(self, status: Optional[int]) -> None:
        self._returncode = status
        self._signal = None

    def poll(self) -> Optional[int]:
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        """The status, waiting up to `timeout` seconds: subprocess.TimeoutExpired then
        (the process keeps running). For start_async's processes: `await wait_async()`."""
        status = self.returncode
        if status is not None:
            return status
        exits = self[1]
        if not isinstance(exits, ExitQueue):
            raise RuntimeError("wait(): started with reap=False, nothing here reaps it" if
                               exits is None else "wait(): started by start_async: "
                               "await wait_async() or the exits future")
        if not exits.exited.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
        return self.returncode         # type: ignore[return-value]

    async def wait_async(self, timeout: Optional[float] = None) -> int:
        """wait() for a process of start_async."""
        import asyncio
        exits = self[1]
        if not isinstance(exits, asyncio.Future):
            raise RuntimeError("wait_async(): for processes of start_async")
        try:
            await asyncio.wait_for(asyncio.shield(exits), timeout)
        except asyncio.TimeoutError:
            raise subprocess.TimeoutExpired(self.args, timeout) from None  # type: ignore
        return self.returncode         # type: ignore[return-value]

    # -- signals ---------------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """Send `sig` through the process's pidfd; nothing once it has exited."""
        if self.returncode is not None:
            return
        if self._signal is None:
            raise RuntimeError("send_signal(): started with reap=False, no pidfd is kept")
        self._signal(sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    # -- the pipes -------------------------------------------------------------------

    def communicate(self, input: Union[bytes, str, None] = None,
                    timeout: Optional[float] = None) -> tuple[Any, Any]:
        """As Popen.communicate: write `input` to stdin and close it, read stdout and
        stderr together until EOF (output of any size, no deadlock), wait for the exit.
        (stdout, stderr): bytes, str in text mode, None where no pipe was asked. After
        subprocess.TimeoutExpired (which holds the output so far) it may be called again
        and goes on where it stopped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._input is None:
            if input is not None and self.stdin is None:
                raise ValueError("communicate(input): stdin is not a pipe (subprocess.PIPE)")
            if isinstance(input, str):
                assert self._process is not None
                input = input.encode(_encoding(self._process), self._process.errors or
                                     "strict")
            self._input = memoryview(input or b"")
            self._flush_stdin()
        elif input:
            raise ValueError("Cannot send input after starting communication")
        with selectors.DefaultSelector() as sel:
            if self.stdin is not None:
                sel.register(self.stdin, selectors.EVENT_WRITE)
            for f in (self.stdout, self.stderr):
                if f is not None:
                    self._read.setdefault(f.fileno(), b"")
                    sel.register(f, selectors.EVENT_READ)
            while sel.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout,  # type: ignore
                                                    *self._output(final=False))
                for key, _ in sel.select(left):
                    if key.fileobj is self.stdin:
                        self._write_some(sel)
                    else:
                        chunk = os.read(key.fd, 1 << 16)
                        if chunk:
                            self._read[key.fd] += chunk
                        else:
                            sel.unregister(key.fileobj)
        out = self._output(final=True)
        for f in (self.stdout, self.stderr):
            if f is not None:
                f.close()
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            self.wait(left)
        except subprocess.TimeoutExpired as exc:
            exc.output, exc.stderr = out
            raise
        return out

    async def communicate_async(self, input: Union[bytes, str, None] = None
                                ) -> tuple[Any, Any]:
        """communicate() for a process of start_async, on the running loop's readers and
        writers (no thread); asyncio.wait_for gives it a timeout."""
        import asyncio
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        if isinstance(input, str):
            assert self._process is not None
            input = input.encode(_encoding(self._process), self._process.errors or "strict")
        view = memoryview(input or b"")
        watched: dict[int, Callable[[int], object]] = {}     # fd -> its remover

        def stop(f: IO[Any]) -> None:
            watched.pop(f.fileno())(f.fileno())
            if f is self.stdin:
                self._close_stdin()
            if not watched and not done.done():
                done.set_result(None)

        def on_read(f: IO[Any]) -> None:
            chunk = os.read(f.fileno(), 1 << 16)
            if chunk:
                self._read[f.fileno()] += chunk
            else:
                stop(f)

        def on_write() -> None:
            nonlocal view
            assert self.stdin is not None
            try:
                view = view[os.write(self.stdin.fileno(), view[:1 << 16]):]
            except BrokenPipeError:
                view = view[:0]
            if not view:
                stop(self.stdin)

        try:
            for f in (self.stdout, self.stderr):
                if f is not None and not f.closed:
                    self._read.setdefault(f.fileno(), b"")
                    os.set_blocking(f.fileno(), False)
                    watched[f.fileno()] = loop.remove_reader
                    loop.add_reader(f.fileno(), on_read, f)
            if self.stdin is not None and not self.stdin.closed:
                self._input = view
                self._flush_stdin()
                if view:
                    os.set_blocking(self.stdin.fileno(), False)
                    watched[self.stdin.fileno()] = loop.remove_writer
                    loop.add_writer(self.stdin.fileno(), on_write)
            if watched:
                await done
            await self.wait_async()
        finally:
            for fd, remove in watched.items():
                remove(fd)
        out = self._output(final=True)
        for f in (self.stdout, self.stderr):
            if f is not None:
                f.close()
        return out

    def _flush_stdin(self) -> None:
        if self.stdin is None:
            return
        try:
            self.stdin.flush()
        except BrokenPipeError:
            pass
        if not self._input:
            self._close_stdin()

    def _close_stdin(self) -> None:
        try:
            self.stdin.close()       # type: ignore[union-attr]
        except BrokenPipeError:
            pass

    def _write_some(self, sel: selectors.BaseSelector) -> None:
        assert self.stdin is not None and self._input is not None
        try:
            n = os.write(self.stdin.fileno(), self._input[:1 << 16])
            self._input = self._input[n:]
        except BrokenPipeError:     # it did not read it all: its business, as subprocess
            self._input = self._input[:0]
        if not self._input:
            sel.unregister(self.stdin)
            self._close_stdin()

    def _output(self, final: bool) -> tuple[Any, Any]:
        out = []
        for f in (self.stdout, self.stderr):
            data = None if f is None or f.closed else self._read.get(f.fileno(), b"")
            if data is not None and final and self._process is not None \
                    and self._process.text_mode:
                out.append(_decode(data, self._process))
            else:
                out.append(data)
        return out[0], out[1]
