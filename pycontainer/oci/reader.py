"""Typed reads of a JSON document with the JSON path of every value.

Every error is a ``SpecError`` (a ``ConfigInvalidError``) whose message starts with the
path of the offending value: ``linux.resources.memory.limit: expected an integer, got "1g"``.
The readers take the parent path and a key, so callers never build paths by hand.
"""
from __future__ import annotations

import json
import re

from ..errors import ConfigInvalidError, ContainerError

__all__ = ["SpecError", "MISSING", "join", "fail", "obj", "string", "integer", "boolean",
           "array", "strings", "from_library", "load_json", "MAX_JSON_BYTES"]

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


# A document from the user: nothing real comes near these (config.json nests 6 deep with a
# seccomp profile); deeper nesting would exhaust the recursion of json and of what reads it.
MAX_JSON_BYTES = 16 << 20
MAX_JSON_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")


def load_json(data, what):
    """The JSON document in `data` (bytes, at most MAX_JSON_BYTES), from the user: `what`
    names it in errors (config.json, --process FILE). SpecError when it is not JSON, too
    large, nested more than MAX_JSON_DEPTH deep, or has a lone surrogate (a "\\ud800"
    escape: JSON allows it, but it is no character, and no argv, path or file can hold
    it) in a string or key."""
    if len(data) > MAX_JSON_BYTES:
        raise SpecError(what, MISSING, f"larger than {MAX_JSON_BYTES >> 20} MiB")
    try:
        doc = json.loads(data)
    except RecursionError:
        raise SpecError(what, MISSING, f"nested more than {MAX_JSON_DEPTH} levels deep") \
            from None
    except ValueError as exc:                       # UnicodeDecodeError too
        raise SpecError(what, MISSING, f"not valid JSON: {exc}") from None
    # Both checks iterate: what they look for would overflow a recursion. A lone surrogate
    # can only come from a \\uD800-\\uDFFF escape (UTF-8 cannot carry one): the walk with
    # paths for the message only runs when the text has such an escape.
    stack = [(doc, 0)] if isinstance(doc, (dict, list)) else []
    while stack:
        value, depth = stack.pop()
        if depth >= MAX_JSON_DEPTH:
            raise SpecError(what, MISSING, f"nested more than {MAX_JSON_DEPTH} levels deep")
        items = value.values() if isinstance(value, dict) else value
        stack.extend((v, depth + 1) for v in items if isinstance(v, (dict, list)))
    if _SURROGATE_ESCAPE.search(data):
        _refuse_surrogates(doc, what)
    return doc


def _refuse_surrogates(doc, what):
    stack = [(doc, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise SpecError(f"{what}: {path}" if path else what, value,
                                "contains a lone surrogate (not a Unicode character)")
        elif isinstance(value, list):
            stack.extend((item, join(path, i)) for i, item in enumerate(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    raise SpecError(f"{what}: {path}" if path else what, key,
                                    "has a key with a lone surrogate (not a Unicode character)")
                stack.append((item, join(path, key)))


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
