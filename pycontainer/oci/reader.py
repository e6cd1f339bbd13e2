"""Typed reads of a JSON document with the JSON path of every value.

Every error is a ``SpecError`` (a ``ConfigInvalidError``) whose message starts with the
path of the offending value: ``linux.resources.memory.limit: expected an integer, got "1g"``.
The readers take the parent path and a key, so callers never build paths by hand.
"""
from __future__ import annotations

import json

from ..errors import ConfigInvalidError, ContainerError

__all__ = ["SpecError", "MISSING", "join", "fail", "obj", "string", "integer", "boolean",
           "array", "strings", "from_library"]

MISSING = object()
_MAX_U32 = (1 << 32) - 1
_MAX_U64 = (1 << 64) - 1
_MIN_I64, _MAX_I64 = -(1 << 63), (1 << 63) - 1


def _show(value):
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class SpecError(ConfigInvalidError):
    """A config.json value is missing, of the wrong type, unknown, or not supported.
    ``field`` is its JSON path (``mounts[2].destination``)."""

    def __init__(self, path, value, reason, *, container_id=None, operation=None):
        self.field = path
        self.value = None if value is MISSING else value
        self.reason = reason
        message = f"{path}: {reason}" if value is MISSING else \
            f"{path}: {reason}, got {_show(value)}"
        ContainerError.__init__(self, message, container_id=container_id, operation=operation)

    def __reduce__(self):
        return (_rebuild, (self.field, self.value, self.reason, self.container_id,
                           self.operation))


def _rebuild(path, value, reason, container_id, operation):
    return SpecError(path, value, reason, container_id=container_id, operation=operation)


def join(path, key):
    """The path of `key` (a name or an index) below `path`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def fail(path, value, reason):
    raise SpecError(path, value, reason)


def _type_name(value):
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def obj(value, path, known, required=()):
    """`value` as a dict after checking it is a JSON object with only `known` keys and
    every `required` one."""
    if not isinstance(value, dict):
        fail(path or "config.json", value, "expected an object")
    for key in value:
        if key not in known:
            fail(join(path, key), value[key], "unknown field")
    for key in required:
        if key not in value:
            fail(join(path, key), MISSING, "required field missing")
    return value


def _get(d, path, key, default):
    value = d.get(key, MISSING)
    return (default, join(path, key), True) if value is MISSING else (value, join(path, key), False)


def string(d, path, key, default=MISSING, *, nonempty=False, absolute=False):
    value, where, missing = _get(d, path, key, default)
    if missing:
        if default is MISSING:
            fail(where, MISSING, "required field missing")
        return default
    if not isinstance(value, str):
        fail(where, value, "expected a string")
    if "\0" in value:
        fail(where, value, "contains a NUL byte")
    if nonempty and not value:
        fail(where, value, "must not be empty")
    if absolute and not value.startswith("/"):
        fail(where, value, "expected an absolute path")
    return value


def integer(d, path, key, default=MISSING, *, lo=_MIN_I64, hi=_MAX_I64):
    value, where, missing = _get(d, path, key, default)
    if missing:
        if default is MISSING:
            fail(where, MISSING, "required field missing")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        fail(where, value, "expected an integer")
    if not lo <= value <= hi:
        fail(where, value, f"expected an integer in {lo}..{hi}")
    return value


def uint32(d, path, key, default=MISSING):
    return integer(d, path, key, default, lo=0, hi=_MAX_U32)


def uint64(d, path, key, default=MISSING):
    return integer(d, path, key, default, lo=0, hi=_MAX_U64)


def boolean(d, path, key, default=MISSING):
    value, where, missing = _get(d, path, key, default)
    if missing:
        if default is MISSING:
            fail(where, MISSING, "required field missing")
        return default
    if not isinstance(value, bool):
        fail(where, value, "expected true or false")
    return value


def array(d, path, key, default=MISSING):
    """A JSON array (null reads as the default: Go's encoder writes nil slices as null)."""
    value, where, missing = _get(d, path, key, default)
    if missing or value is None:
        if missing and default is MISSING:
            fail(where, MISSING, "required field missing")
        return [] if default is MISSING else default
    if not isinstance(value, list):
        fail(where, value, "expected an array")
    return value


def mapping(d, path, key):
    """A JSON object of string values (annotations, sysctl); {} when absent or null."""
    value, where, missing = _get(d, path, key, None)
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(where, value, "expected an object")
    for k, v in value.items():
        if not isinstance(v, str):
            fail(join(where, k), v, "expected a string")
    return dict(value)


def strings(d, path, key, default=MISSING):
    items = array(d, path, key, default)
    where = join(path, key)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            fail(join(where, i), item, "expected a string")
        if "\0" in item:
            fail(join(where, i), item, "contains a NUL byte")
    return list(items)


def from_library(path, exc, fields=None):
    """A library ConfigInvalidError, re-raised with the JSON path. `fields` maps the
    library's field names (``mounts.destination``) to paths below `path`; an unknown
    field name gives `path` itself."""
    if isinstance(exc, SpecError):
        return exc
    where = path
    name = getattr(exc, "field", None)
    if fields and name in fields:
        where = join(path, fields[name]) if fields[name] else path
    elif name and name.startswith(path + ".") or name and name.startswith(path + "["):
        where = name
    return SpecError(where, getattr(exc, "value", MISSING), getattr(exc, "reason", str(exc)))
