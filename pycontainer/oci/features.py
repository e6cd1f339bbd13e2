"""The OCI features document (`pycontainer features`): what this runtime recognises."""
from __future__ import annotations

from .. import __version__
from ..config import JOINABLE_NAMESPACES, MOUNT_FLAGS, NAMESPACES
from ..seccomp import ACTIONS, ARCHITECTURES, FLAGS, OPERATORS
from ..security import CAPABILITIES
from .hooks import HOOK_NAMES
from .spec import OCI_NAMESPACE_TYPES
from .version import ACCEPTED, OCI_VERSION, OCI_VERSION_MIN

__all__ = ["features"]


def features():
    """ociVersionMax is the newest runtime-spec whose every field is known (runc reports
    the spec it was built with the same way); any newer 1.x is read too, as the
    org.pycontainer.ociVersions annotation says."""
    oci_flags = [f for f in sorted(FLAGS) if f != "SECCOMP_FILTER_FLAG_TSYNC"]
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION,
        "hooks": [name for name, _ in HOOK_NAMES],
        "mountOptions": sorted(set(MOUNT_FLAGS) | {"defaults"}),
        "linux": {
            "namespaces": [OCI_NAMESPACE_TYPES[n] for n in NAMESPACES],
            "capabilities": list(CAPABILITIES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": False},
            "seccomp": {"enabled": True, "actions": sorted(ACTIONS),
                        "operators": sorted(OPERATORS),
                        "archs": sorted(a for a in ARCHITECTURES if a != "SCMP_ARCH_NATIVE"),
                        "knownFlags": oci_flags, "supportedFlags": oci_flags},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
            "netDevices": {"enabled": False},
        },
        # The spec's document has no field for these: linux.namespaces[].path is accepted
        # for the types listed, and "pid" may be left out (the caller's is shared).
        "annotations": {"org.pycontainer.version": __version__,
                        "org.pycontainer.ociVersions": ACCEPTED,
                        "org.pycontainer.joinableNamespaces":
                            ",".join(OCI_NAMESPACE_TYPES[n] for n in JOINABLE_NAMESPACES),
                        "org.pycontainer.optionalNamespaces": "pid,uts,ipc,network,cgroup,user"},
    }
