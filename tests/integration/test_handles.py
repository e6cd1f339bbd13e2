"""Container as a context manager, repr()s, the ResourceWarning of a dropped running
container, and the 'pycontainer' logger."""
import gc
import logging
import re
import warnings

import pycontainer as pc


def test_with_destroys_and_repr(factory, busybox_rootfs):
    cfg = pc.Config(rootfs=busybox_rootfs, hostname="h1")
    assert repr(cfg) == f"Config(rootfs={busybox_rootfs!r}, hostname='h1')"
    assert repr(factory) == f"<Factory root={factory.root!r}>"
    with factory.create("cm", cfg) as c:
        assert re.match(r"<Container 'cm' created at ", repr(c))
        pid, _ = c.start(pc.ProcessConfig(args=["sleep", "100"]))
        assert repr(c).startswith(f"<Container 'cm' running init={pid} ")
    assert factory.list() == []


def test_dropping_a_running_container_warns(factory, busybox_rootfs):
    c = factory.create("dropped", pc.Config(rootfs=busybox_rootfs))
    c.start(pc.ProcessConfig(args=["sleep", "100"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del c
        gc.collect()
    assert any(w.category is ResourceWarning and "'dropped' still runs" in str(w.message)
               for w in caught)
    factory.destroy("dropped")
    with warnings.catch_warnings(record=True) as caught:    # destroyed: nothing to say
        warnings.simplefilter("always")
        with factory.create("quiet", pc.Config(rootfs=busybox_rootfs)) as c:
            c.start(pc.ProcessConfig(args=["sleep", "100"]))
        del c
        gc.collect()
    assert not [w for w in caught if w.category is ResourceWarning]


def test_debug_log_of_create_start_destroy(factory, busybox_rootfs, caplog):
    with caplog.at_level(logging.DEBUG, logger="pycontainer"):
        with factory.create("logged", pc.Config(rootfs=busybox_rootfs)) as c:
            pid, exits = c.start(pc.ProcessConfig(args=["true"]))
            exits.get(timeout=10)
    text = caplog.text
    assert "create logged in" in text and f"start logged: pid {pid}" in text
    assert "destroy logged in" in text
