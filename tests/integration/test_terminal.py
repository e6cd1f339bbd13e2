"""ProcessConfig(terminal=True): the process gets a pty of the container's own devpts as
its controlling terminal and stdio, and the caller gets the master (runc's console)."""
import errno

import pytest

import pycontainer as pc
from helpers import converse  # noqa: E402  (tests/helpers.py)


SCRIPT = ("tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-ttys; "
          "cut -d' ' -f6 /proc/self/stat | grep -qv '^0$' && echo has-ctty; exit 3\n")


def test_init_and_joined_process_on_a_terminal(factory, busybox_rootfs):
    c = factory.create("tty", pc.Config(rootfs=busybox_rootfs))
    try:
        started = c.start(pc.ProcessConfig(args=["/bin/sh"], terminal=True))
        pid, exits = started                        # still the pair it always was
        assert started.pid == pid and isinstance(started.console, int)
        out = converse(started.console, SCRIPT)
        assert "/dev/pts/0" in out and "all-ttys" in out and "has-ctty" in out, out
        assert exits.get(timeout=10) == 3

        init, _ = c.start(pc.ProcessConfig(args=["sleep", "100"]))
        joined = c.start(pc.ProcessConfig(args=["/bin/sh"], terminal=True, user="1000:1000"))
        out = converse(joined.console, "id -u; " + SCRIPT)
        assert "1000" in out and "all-ttys" in out and "has-ctty" in out, out
        assert joined.exits.get(timeout=10) == 3
    finally:
        c.destroy()


def test_staged_init_on_a_terminal(factory, busybox_rootfs):
    c = factory.create("tty", pc.Config(rootfs=busybox_rootfs))
    try:
        started = c.stage(pc.ProcessConfig(args=["/bin/sh"], terminal=True))
        assert c.run_state() == pc.RunState.CREATED
        c.exec()
        assert "all-ttys" in converse(started.console, SCRIPT)
        assert started.exits.get(timeout=10) == 3
    finally:
        c.destroy()


def test_no_terminal_means_no_console(factory, busybox_rootfs):
    c = factory.create("plain", pc.Config(rootfs=busybox_rootfs))
    try:
        started = c.start(pc.ProcessConfig(args=["true"]))
        assert started.console is None and started.exits.get(timeout=10) == 0
    finally:
        c.destroy()


def test_terminal_excludes_stdio():
    with pytest.raises(pc.ConfigInvalidError, match="terminal=True: a terminal is the"):
        pc.ProcessConfig(args=["sh"], terminal=True, stdout=1)
    with pytest.raises(pc.ConfigInvalidError, match="terminal='yes'"):
        pc.ProcessConfig(args=["sh"], terminal="yes")


@pytest.mark.parametrize("operation", ["start"])
def test_terminal_failure_leaves_nothing(factory, busybox_rootfs, operation):
    """A limit the child cannot set (nofile above fs.nr_open: EPERM), applied after the
    pty is opened and its master sent: stage `rlimits`, no process, no fd. (A staged init
    applies its limits after the go, so this cannot fail stage().)"""
    c = factory.create("notty", pc.Config(rootfs=busybox_rootfs))
    with open("/proc/sys/fs/nr_open") as f:
        too_many = int(f.read()) + 1
    nofile = pc.config.Rlimit("RLIMIT_NOFILE", too_many, too_many)
    try:
        with pytest.raises(pc.ContainerSystemError) as info:
            getattr(c, operation)(pc.ProcessConfig(args=["sh"], terminal=True,
                                                   rlimits=[nofile]))
        assert (info.value.stage, info.value.errno) == ("rlimits", errno.EPERM)
        assert f"container 'notty': {operation}: rlimits:" in str(info.value)
        assert c.processes() == []
    finally:
        c.destroy()
