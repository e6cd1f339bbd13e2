"""Images written by the tests themselves: layer tars entry by entry, and OCI layouts,
oci-archives and docker-archives around them (no registry, no image tool)."""
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile

BUSYBOX = "/bin/busybox"


def entry(name, kind="file", data=b"", mode=None, link="", uid=0, gid=0):
    """(TarInfo, data) of one layer entry. kind: file, dir, symlink, hardlink, fifo,
    chr, blk."""
    info = tarfile.TarInfo(name)
    info.uid, info.gid, info.mtime = uid, gid, 1700000000
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
             "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE,
             "blk": tarfile.BLKTYPE}
    info.type = types[kind]
    info.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    info.linkname = link
    if kind == "file":
        info.size = len(data)
    return info, data


def layer_tar(entries):
    """The bytes of an uncompressed layer tar of `entries`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def busybox_layer():
    """The base layer: busybox-static with its applets as symlinks, /etc/passwd."""
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    entries = [entry("./", "dir")]
    entries += [entry(d, "dir") for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root",
                                          "run", "home", "home/app")]
    entries.append(entry("bin/busybox", data=busybox, mode=0o755))
    entries += [entry(f"bin/{a}", "symlink", link="busybox") for a in applets if a != "busybox"]
    entries.append(entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"
                                            b"app:x:1000:1000:app:/home/app:/bin/sh\n"))
    entries.append(entry("etc/group", data=b"root:x:0:\napp:x:1000:\n"))
    return entries


def compress(data, how):
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        import zstandard
        return zstandard.ZstdCompressor().compress(data)
    return data


def _blob(blobs, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest


def oci_blobs(layers, config=None, how="gzip", tag="test:latest"):
    """{path: bytes} of an OCI image layout of the layer tars `layers` (bytes, bottom
    first) and the image config's `config` section."""
    blobs = {}
    descriptors, diff_ids = [], []
    for raw in layers:
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        packed = compress(raw, how)
        media = {"gzip": "+gzip", "zstd": "+zstd"}.get(how, "")
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" + media,
                            "digest": _blob(blobs, packed), "size": len(packed)})
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": config or {},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _blob(blobs, cfg), "size": len(cfg)},
        "layers": descriptors}).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": _blob(blobs, manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    files = {f"blobs/sha256/{d[7:]}": data for d, data in blobs.items()}
    files["index.json"] = json.dumps(index).encode()
    files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    return files


def write_layout(path, files):
    for name, data in files.items():
        os.makedirs(os.path.join(path, os.path.dirname(name)), exist_ok=True)
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
    return str(path)


def write_tar(path, files):
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def docker_archive(path, layers, config=None, tag="localhost/test:latest"):
    """A docker-archive (docker save's format) of uncompressed layer tars."""
    files, names, diff_ids = {}, [], []
    for raw in layers:
        hexd = hashlib.sha256(raw).hexdigest()
        diff_ids.append("sha256:" + hexd)
        names.append(f"{hexd}/layer.tar")
        files[names[-1]] = raw
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": config or {},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    files[cfg_name] = cfg
    files["manifest.json"] = json.dumps([{"Config": cfg_name, "RepoTags": [tag],
                                          "Layers": names}]).encode()
    return write_tar(path, files)
