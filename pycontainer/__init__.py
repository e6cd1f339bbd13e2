"""pycontainer: a Linux container runtime for Python programs.

The public names are imported on first use (PEP 562), not with the package: the command
line (pycontainer.cli) runs for every operation a container engine makes, and most of its
commands need none of the library's config, seccomp or cgroup machinery."""

__all__ = [
    "Config", "Mount", "Network", "ProcessConfig", "Resources", "Container", "StartedProcess",
    "Factory", "RunState", "ContainerStats", "Event", "ContainerError", "ConfigInvalidError",
    "ContainerNotExistError", "ContainerNotRunningError", "ContainerNotStoppedError",
    "ContainerPausedError", "ContainerSystemError", "IdInUseError", "InvalidIdError",
    "StateInvalidError", "Image", "ImageError", "Pool", "PoolStats",
]
__version__ = "0.1.0"

_MODULE_OF = {
    "Config": "config", "Mount": "config", "Network": "config", "ProcessConfig": "config",
    "Resources": "config", "Container": "container", "StartedProcess": "process",
    "Factory": "factory", "RunState": "state", "StateInvalidError": "state",
    "ContainerStats": "stats", "Event": "events", "Image": "image", "ImageError": "errors",
    "Pool": "pool", "PoolStats": "pool",
    **{name: "errors" for name in (
        "ContainerError", "ConfigInvalidError", "ContainerNotExistError",
        "ContainerNotRunningError", "ContainerNotStoppedError", "ContainerPausedError",
        "ContainerSystemError", "IdInUseError", "InvalidIdError")},
}


def __getattr__(name):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'pycontainer' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value         # the next lookup is a plain module attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
