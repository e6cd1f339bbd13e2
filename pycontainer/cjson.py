"""JSON through CPython's C accelerator (_json) alone, for the commands that start for
one read or write of a state record: importing the json package imports re (for a few
module-level patterns), and re enum, functools and collections, which together cost a
short command more than its work.

The output is json.dumps' byte for byte (ensure_ascii, the same float and key handling);
anything this module does not handle the way json does (a document that is not plain
ASCII, a decode error, a value json would reject or convert) is handed to the json
package, so results and errors are json's.
"""
from __future__ import annotations

try:
    from _json import encode_basestring_ascii as _quote
    from _json import make_encoder as _make_encoder
    from _json import make_scanner as _make_scanner
except ImportError:               # an interpreter without the accelerator: json's own
    _make_scanner = _make_encoder = _quote = None

__all__ = ["loads", "dumps"]

_WHITESPACE = " \t\n\r"
_FLOAT_SPECIAL = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


class _Context:
    """What _json.make_scanner reads from a json.JSONDecoder (its defaults)."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__
    memo = None


_scan = [None]


def loads(data):
    """json.loads(data) of bytes or str."""
    if _make_scanner is not None:
        try:
            text = data.decode("ascii") if isinstance(data, bytes) else data
            if text and text[0] not in _WHITESPACE:
                scan = _scan[0]
                if scan is None:
                    scan = _scan[0] = _make_scanner(_Context())
                value, end = scan(text, 0)
                if end == len(text) or not text[end:].strip(_WHITESPACE):
                    return value
        except (UnicodeDecodeError, StopIteration, ValueError, RecursionError, SystemError):
            # json says what is wrong, in its words. (The scanner's own error is a
            # json.decoder.JSONDecodeError, which it finds only when json is imported:
            # else it fails with SystemError.)
            pass
    import json
    return json.loads(data)


def _refuse(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _float(value):
    text = float.__repr__(value)
    return _FLOAT_SPECIAL.get(text, text)


class _Unusual(Exception):
    """A value the indented writer leaves to json."""


def _indented(value, level, out):
    """json.dumps(value, indent=2)'s text of `value` at `level`, appended to out."""
    if isinstance(value, str):
        out.append(_quote(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif type(value) is int:
        out.append(int.__repr__(value))
    elif type(value) is float:
        out.append(_float(value))
    elif type(value) in (list, tuple):
        if not value:
            out.append("[]")
            return
        inner = "\n" + "  " * (level + 1)
        out.append("[")
        for i, item in enumerate(value):
            out.append(inner if i == 0 else "," + inner)
            _indented(item, level + 1, out)
        out.append("\n" + "  " * level + "]")
    elif type(value) is dict:
        if not value:
            out.append("{}")
            return
        inner = "\n" + "  " * (level + 1)
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if type(key) is not str:
                raise _Unusual()
            out.append((inner if i == 0 else "," + inner) + _quote(key) + ": ")
            _indented(item, level + 1, out)
        out.append("\n" + "  " * level + "}")
    else:
        raise _Unusual()


def dumps(value, indent=None, separators=None):
    """json.dumps(value, indent=indent, separators=separators) for indent None or 2."""
    if _make_encoder is not None and indent is None:
        item_sep, key_sep = separators or (", ", ": ")
        encode = _make_encoder({}, _refuse, _quote, None, key_sep, item_sep, False, False,
                               True)
        try:
            return "".join(encode(value, 0))
        except (TypeError, ValueError):
            pass
    elif _quote is not None and indent == 2 and separators is None:
        out = []
        try:
            _indented(value, 0, out)
            return "".join(out)
        except (_Unusual, RecursionError):
            pass
    import json
    return json.dumps(value, indent=indent, separators=separators)
