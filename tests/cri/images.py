"""The images the CRI tests and critest use, built here from Debian's busybox-static
(no registry is reachable): each is an OCI image of one uncompressed layer. They are
stand-ins under the exact names the users of the test bed ask for:

- the sandbox ("pause") image: only /pause, a static C program built here that waits for
  a signal, as the real one (so it has no /etc: containerd's /etc/hosts, /etc/hostname
  and /etc/resolv.conf bind mounts must make their mount points in a read-only root);
- busybox: /bin/busybox with its applets as hard links, /etc/passwd and /etc/group, /tmp;
- busybox without /etc: the same without /etc (a container image that lacks it).

`oci_archive` writes them as one OCI image layout tar with containerd's name annotation
(what `ctr images import` reads); `blobs` is what a registry serves."""
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile

PAUSE_IMAGE = "registry.k8s.io/pause:3.6"         # containerd 1.6's default sandbox_image
BUSYBOX_IMAGE = "registry.k8s.io/e2e-test-images/busybox:1.29-2"   # critest's default
NOETC_IMAGE = "localhost/pycontainer-test/busybox-noetc:1"

PAUSE_C = r"""
#include <signal.h>
#include <unistd.h>
static void done(int sig) { _exit(0); }
int main(void) {
    signal(SIGTERM, done);
    signal(SIGINT, done);
    for (;;) pause();
}
"""

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


class Image:
    """One image: its layer, config and manifest bytes, and their digests."""

    def __init__(self, layer, config):
        self.layer = layer
        self.config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
        }, sort_keys=True).encode()
        self.manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest(self.config), "size": len(self.config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": digest(layer), "size": len(layer)}],
        }, sort_keys=True).encode()

    def blobs(self):
        return {digest(b): b for b in (self.layer, self.config, self.manifest)}


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(entries):
    """An uncompressed tar of entries: (path, kind, data_or_target, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, kind, data, mode in entries:
            info = tarfile.TarInfo(path)
            info.mode = mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _pause_binary():
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "pause.c")
        with open(src, "w") as f:
            f.write(PAUSE_C)
        subprocess.run(["gcc", "-static", "-O2", "-o", os.path.join(d, "pause"), src],
                       check=True, capture_output=True)
        with open(os.path.join(d, "pause"), "rb") as f:
            return f.read()


def _busybox_entries(with_etc):
    with open(BUSYBOX, "rb") as f:
        binary = f.read()
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    entries = [("bin", "dir", None, 0o755), ("bin/busybox", "file", binary, 0o755),
               ("tmp", "dir", None, 0o1777)]
    # hard links, as the busybox images have: masking one applet (critest masks /bin/ls)
    # must not mask the binary behind a symlink
    entries += [(f"bin/{a}", "hardlink", "bin/busybox", 0o755) for a in applets
                if a != "busybox"]
    if with_etc:
        entries += [("etc", "dir", None, 0o755),
                    ("etc/passwd", "file", b"root:x:0:0:root:/root:/bin/sh\n"
                     b"nobody:x:65534:65534:nobody:/:/bin/sh\n", 0o644),
                    ("etc/group", "file", b"root:x:0:\nnogroup:x:65534:\n", 0o644),
                    ("root", "dir", None, 0o700)]
    return entries


def build():
    """{name: Image} of every stand-in."""
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    pause = Image(_layer([("pause", "file", _pause_binary(), 0o755)]),
                  {"Entrypoint": ["/pause"], "Env": env})
    busybox = Image(_layer(_busybox_entries(True)), {"Cmd": ["sh"], "Env": env})
    noetc = Image(_layer(_busybox_entries(False)), {"Cmd": ["sh"], "Env": env})
    return {PAUSE_IMAGE: pause, BUSYBOX_IMAGE: busybox, NOETC_IMAGE: noetc}


def oci_archive(images, path):
    """Write {name: Image} as one OCI image layout tar (containerd's import format)."""
    blobs = {}
    manifests = []
    for name, image in images.items():
        blobs.update(image.blobs())
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "digest": digest(image.manifest), "size": len(image.manifest),
                          "annotations": {"io.containerd.image.name": name,
                                          "org.opencontainers.image.ref.name": name}})
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
             "index.json": json.dumps({"schemaVersion": 2, "manifests": manifests}).encode()}
    files.update({f"blobs/sha256/{d.split(':')[1]}": b for d, b in blobs.items()})
    entries = [("blobs", "dir", None, 0o755), ("blobs/sha256", "dir", None, 0o755)]
    entries += [(p, "file", b, 0o644) for p, b in files.items()]
    with open(path, "wb") as f:
        f.write(_layer(entries))
    return path
