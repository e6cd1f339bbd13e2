"""cgroups: find the host's cgroup hierarchies and manage one container's cgroups.

    fs.py       cgroupfs file I/O and parsing, removal of a cgroup tree
    host.py     the host's hierarchies (mountinfo), naming, where containers' cgroups go,
                delegation, which Resources knobs the host supports
    manager.py  CgroupManager (one container's cgroups, every layout) and NullManager
    v1.py       cgroup v1 writers, readers, freezer and kill, OOM watch
    v2.py       cgroup v2 writers, readers, freezer and kill, OOM watch

The rest of the package uses the names below and the manager's methods, never v1/v2.
"""
from .fs import FREEZING, FROZEN, MAX, THAWED
from .host import (DEFAULT_PARENT, Hierarchy, Host, build_host, cgroup_name, delegated, detect,
                   nested_parent, parse_mountinfo, parse_proc_cgroup, supports)
from .manager import CgroupManager, NullManager, load_manager, new_manager

__all__ = ["detect", "cgroup_name", "new_manager", "load_manager", "CgroupManager",
           "NullManager", "Host", "Hierarchy", "MAX", "supports", "delegated", "nested_parent",
           "build_host", "parse_mountinfo", "parse_proc_cgroup", "DEFAULT_PARENT",
           "THAWED", "FREEZING", "FROZEN"]
