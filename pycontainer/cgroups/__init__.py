"""cgroups: find the host's cgroup hierarchies and manage one container's cgroups.

    fs.py       cgroupfs file I/O and parsing, removal of a cgroup tree
    host.py     the host's hierarchies (mountinfo), naming, where containers' cgroups go,
                delegation, which Resources knobs the host supports
    manager.py  CgroupManager (one container's cgroups, every layout) and NullManager
    v1.py       cgroup v1 writers, readers, freezer and kill, OOM watch
    v2.py       cgroup v2 writers, readers, freezer and kill, OOM watch

The rest of the package uses the names below and the manager's methods, never v1/v2.
"""
# The names below are imported on first use (PEP 562): the command line's short commands
# use cgroups.fs alone, and importing the package must not pull in the manager (and the
# statistics types and dataclasses with it).
_MODULE_OF = {
    **{n: "fs" for n in ("FREEZING", "FROZEN", "MAX", "THAWED")},
    **{n: "host" for n in ("DEFAULT_PARENT", "Hierarchy", "Host", "build_host", "cgroup_name",
                           "delegated", "detect", "nested_parent", "parse_mountinfo",
                           "parse_proc_cgroup", "supports")},
    **{n: "manager" for n in ("CgroupManager", "NullManager", "load_manager", "new_manager")},
}

__all__ = ["detect", "cgroup_name", "new_manager", "load_manager", "CgroupManager",
           "NullManager", "Host", "Hierarchy", "MAX", "supports", "delegated", "nested_parent",
           "build_host", "parse_mountinfo", "parse_proc_cgroup", "DEFAULT_PARENT",
           "THAWED", "FREEZING", "FROZEN"]


def __getattr__(name):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
