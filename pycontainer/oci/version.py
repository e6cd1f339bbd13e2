"""Which runtime-spec versions pycontainer reads and writes: the one place that says so.

A config.json may declare any 1.x: the 1.x releases only add optional fields, and a field
this runtime does not know is refused by its JSON path when the document uses it (so a
newer minor version that uses nothing new runs, as runc and crun run it). 0.x and 2.x are
refused.
"""
from __future__ import annotations

import re

from .reader import SpecError

__all__ = ["OCI_VERSION", "OCI_VERSION_MIN", "WRITTEN_VERSION", "ACCEPTED", "check_version"]

OCI_VERSION = "1.2.0"          # the newest runtime-spec whose every field is known here
OCI_VERSION_MIN = "1.0.0"
ACCEPTED = "1.x (1.0.0 and newer)"
# What the documents written here say: they use no field newer than 1.0.2, and older
# runtimes refuse versions they do not know (crun 1.8 refuses 1.2.0).
WRITTEN_VERSION = "1.0.2"

# Semantic versioning, as the spec's ociVersion is: MAJOR.MINOR.PATCH[-pre][+build]; the
# patch may be left out ("1.0"), as some generators write it.
_SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?"
                     r"(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")


def check_version(version, where="ociVersion"):
    """`version` (a string) if it is a 1.x pycontainer reads, else a SpecError at `where`."""
    m = _SEMVER.fullmatch(version)
    if m is None:
        raise SpecError(where, version, "not a runtime-spec version: expected "
                        "MAJOR.MINOR.PATCH such as 1.2.0")
    if m.group(1) != "1":
        raise SpecError(where, version,
                        f"unsupported runtime-spec version (supported: {ACCEPTED})")
    return version
