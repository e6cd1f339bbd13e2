"""The OCI state document (runtime-spec "State") of a container, with runc's extra fields.

    {"ociVersion": "1.2.0", "id": "box1", "status": "running", "pid": 4242,
     "bundle": "/srv/box1", "rootfs": "/srv/box1/rootfs", "created": "2026-...Z",
     "owner": "root", "annotations": {...}}

What the kernel cannot tell (bundle path, rootfs, annotations, hooks, creation time, owner)
is stored with the container at create, in its state record's extra data
(``Factory.create(extra=oci_extra(bundle))``, read back with ``Container.extra()``).
Status and pid are always read live: ``created`` (its init is staged, not yet running
the program), ``running``, ``pausing``, ``paused`` or ``stopped`` (pid 0).
"""
from __future__ import annotations

import os
import time

__all__ = ["oci_extra", "state_document", "rfc3339"]


def rfc3339(ns=None):
    """A UTC time as Go's RFC3339Nano prints it: 2026-01-02T03:04:05.123456789Z."""
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 10**9)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        text += f".{frac:09d}".rstrip("0")
    return text + "Z"


def _owner():
    import pwd                           # lazily: create's, not state's
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def oci_extra(bundle):
    """What to store with a container made from `bundle` (a spec.Bundle)."""
    from .hooks import hooks_to_oci      # lazily: `state` and `list` need none of hooks
    return {"oci": {"bundle": bundle.path, "rootfs": bundle.rootfs,
                    "annotations": dict(bundle.annotations),
                    "ociVersion": bundle.oci_version, "created": rfc3339(),
                    "owner": _owner(), "hooks": hooks_to_oci(bundle.hooks)}}


def _oci_version():
    from .version import OCI_VERSION     # lazily: only records without one need it
    return OCI_VERSION


def state_document(container, status=None, pid=None, extra=None):
    """The state document of `container`. `status` and `pid` override the live values
    (hooks see "creating" before create returns); `extra` is Container.extra() when the
    caller already has it."""
    oci = (extra if extra is not None else container.extra()).get("oci") or {}
    if status is None:
        status = str(container.run_state())     # RunState's values are runc's names
    if pid is None:
        pid = 0 if status == "stopped" else (container.init_pid() or 0)
    doc = {"ociVersion": oci.get("ociVersion") or _oci_version(), "id": container.id,
           "pid": pid, "status": status, "bundle": oci.get("bundle", ""),
           "rootfs": oci.get("rootfs", ""), "created": oci.get("created", ""),
           "owner": oci.get("owner", "")}
    if oci.get("annotations"):
        doc["annotations"] = oci["annotations"]
    return doc
