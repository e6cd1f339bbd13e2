"""Images: OCI image layouts and archives (`oci-archive`, `docker-archive`, as `podman
save` and `skopeo copy` write them), unpacked once into a content-addressed store.

The store is `<factory root>/.images/` (a dot name, which no container id is):
`sha256/<hex>` is the image's root filesystem, every layer applied in order, named by the
OCI ChainID of its layers (the digest of their uncompressed contents, chained): two
images with the same layers share one tree, and a second `from_*` of an image finds its
tree made. A tree is unpacked into `tmp-*` and renamed into place when it is complete:
a failure (a refused entry, a digest that does not match, a full disk) leaves nothing.
Trees are read-only to containers: each container gets a writable layer of its own
(pycontainer.overlay).

Layer tars are not trusted. Every entry is created relative to the tree's directory
descriptors, opened component by component with O_NOFOLLOW (never through a symlink,
whatever the tar put there); refused, naming the layer and the entry: absolute names,
`..`, a path through a symlink or a file, a hard link whose target is not in the tree,
character and block devices (the runtime gives a container its /dev), unknown entry
types, more than MAX_ENTRIES entries in a layer. Symlinks are made as they are: their
targets are only followed inside a container, whose root is the tree. Whiteouts
(`.wh.<name>`) remove <name> from the layers below and opaque markers (`.wh..wh..opq`)
empty a directory of them, as the image spec says (never what the same layer made).
Layer blobs are gzip, zstd (the `zstandard` module, or Python 3.14's compression.zstd)
or plain tar, told by their first bytes; their digests and diff ids are checked.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from dataclasses import dataclass
from typing import Any, BinaryIO, Optional, Sequence, Union

from .errors import ConfigInvalidError, ContainerError, ImageError
from .state import default_root

__all__ = ["Image", "ImageConfig", "ImageError", "MAX_ENTRIES", "store_dir"]

STORE = ".images"
MAX_ENTRIES = 1_000_000       # per layer: ten times the largest distribution image's
_MAX_JSON = 4 << 20           # an index, manifest or config blob
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_CHUNK = 1 << 20
PathLike = Union[str, "os.PathLike[str]"]


def store_dir(root: Optional[str] = None) -> str:
    """The image store of the factory root `root` (default: Factory's default root)."""
    return os.path.join(os.path.abspath(root or default_root()), STORE)


@dataclass(frozen=True)
class ImageConfig:
    """What the image's config says a container runs: defaults, each overridable."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""

    def __post_init__(self):
        for name in ("entrypoint", "cmd", "env"):
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, name, value)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigInvalidError(f"image.config.{name}", value,
                                         "expected a list of strings")
        for name in ("working_dir", "user"):
            if not isinstance(getattr(self, name), str):
                raise ConfigInvalidError(f"image.config.{name}", getattr(self, name),
                                         "expected a string")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "ImageConfig":
        c = doc.get("config") or {}
        if not isinstance(c, dict):
            raise ValueError("config: expected an object")

        def strings(key):
            value = c.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"config.{key}: expected a list of strings")
            return tuple(value)

        for key in ("WorkingDir", "User"):
            if not isinstance(c.get(key) or "", str):
                raise ValueError(f"config.{key}: expected a string")
        return cls(strings("Entrypoint"), strings("Cmd"), strings("Env"),
                   c.get("WorkingDir") or "", c.get("User") or "")


@dataclass(frozen=True)
class Image:
    """An unpacked image: `rootfs`, its read-only tree in the store; `config`, the
    defaults its config gives (ImageConfig); `chain_id`, the store's name for it; `name`,
    the reference it was found by (a tag), or "". `Config(image=img)` runs containers on
    it, each with a writable layer of its own; `img.process_defaults()` gives the
    ProcessConfig fields its config sets."""

    rootfs: str
    chain_id: str
    config: ImageConfig = ImageConfig()
    name: str = ""

    def __post_init__(self):
        if isinstance(self.config, dict):
            try:
                object.__setattr__(self, "config", ImageConfig(**self.config))
            except TypeError as exc:
                raise ConfigInvalidError("image.config", self.config, str(exc)) from None
        if not isinstance(self.config, ImageConfig):
            raise ConfigInvalidError("image.config", self.config, "expected an ImageConfig")
        if not isinstance(self.name, str):
            raise ConfigInvalidError("image.name", self.name, "expected a string")
        if not isinstance(self.rootfs, str) or not os.path.isabs(self.rootfs):
            raise ConfigInvalidError("image.rootfs", self.rootfs, "expected an absolute path")
        if not isinstance(self.chain_id, str) or not _DIGEST.fullmatch(self.chain_id):
            raise ConfigInvalidError("image.chain_id", self.chain_id, "expected sha256:<hex>")

    # -- defaults for a process --------------------------------------------------------

    def command(self, args: Optional[Sequence[str]] = None) -> list[str]:
        """The argv a container of this image runs: Entrypoint + (args, else Cmd)."""
        argv = list(self.config.entrypoint) + list(self.config.cmd if args is None else args)
        if not argv:
            raise ConfigInvalidError("args", args, f"image {self.name or self.chain_id} has "
                                     "no Entrypoint or Cmd: give the command")
        return argv

    def process_defaults(self, args: Optional[Sequence[str]] = None) -> dict[str, Any]:
        """ProcessConfig keyword arguments from the image config: `args` (command()),
        `env`, `cwd` and `user` (a name resolved in the image's /etc/passwd and
        /etc/group to "uid:gid"), those the config sets. Override by updating the dict:
        `ProcessConfig(**{**img.process_defaults(), "cwd": "/tmp"})`."""
        out: dict[str, Any] = {"args": self.command(args)}
        if self.config.env:
            out["env"] = self.config.env
        if self.config.working_dir:
            out["cwd"] = self.config.working_dir
        if self.config.user:
            out["user"] = self.resolve_user(self.config.user)
        return out

    def resolve_user(self, user: str) -> str:
        """'name', 'uid', 'name:group', 'uid:gid' ... as "uid:gid", names looked up in the
        image's /etc/passwd and /etc/group (read inside the tree, never through a
        symlink). A user without a group gets its passwd entry's gid (0 if unknown)."""
        name, _, group = user.partition(":")
        passwd = _id_table(self.rootfs, "etc/passwd")
        if name.isdigit():
            uid = int(name)
            gid = next((e[1] for e in passwd.values() if e[0] == uid), 0)
        elif name in passwd:
            uid, gid = passwd[name]
        else:
            raise ConfigInvalidError("user", user, f"no user {name!r} in the /etc/passwd of "
                                     f"image {self.name or self.chain_id}")
        if group:
            if group.isdigit():
                gid = int(group)
            else:
                groups = _id_table(self.rootfs, "etc/group")
                if group not in groups:
                    raise ConfigInvalidError("user", user, f"no group {group!r} in the "
                                             f"/etc/group of image {self.name or self.chain_id}")
                gid = groups[group][0]
        return f"{uid}:{gid}"

    # -- loading -----------------------------------------------------------------------

    @classmethod
    def from_oci_layout(cls, path: PathLike, tag: Optional[str] = None, *,
                        root: Optional[str] = None) -> "Image":
        """The image of an OCI image layout directory (index.json, blobs/): the manifest
        whose org.opencontainers.image.ref.name is `tag`, or the only one. Unpacked into
        the store of the factory root `root` (default: Factory's) unless there already."""
        path = os.fspath(path)
        return _load(_LayoutBlobs(path), path, tag, root)

    @classmethod
    def from_archive(cls, path: PathLike, tag: Optional[str] = None, *,
                     root: Optional[str] = None) -> "Image":
        """The image of a tar archive: an OCI layout in a tar (`podman save --format
        oci-archive`, `skopeo copy ... oci-archive:`) or a docker-archive (`podman save`,
        `docker save`: manifest.json and layer tars). `tag` picks an image of a
        multi-image archive (a ref name or a RepoTags entry)."""
        import tarfile          # lazily: the rest of the package never needs it
        path = os.fspath(path)
        try:
            archive = tarfile.open(path, "r:")
        except (OSError, tarfile.TarError) as exc:
            raise ImageError(f"{path}: not a readable tar archive: {exc}") from None
        with archive:
            blobs = _ArchiveBlobs(path, archive)
            if blobs.has("index.json"):
                return _load(blobs, path, tag, root)
            if blobs.has("manifest.json"):
                return _load_docker(blobs, path, tag, root)
        raise ImageError(f"{path}: neither an oci-archive (index.json) nor a docker-archive "
                         "(manifest.json)")


# -- reading the image's documents ---------------------------------------------------


class _LayoutBlobs:
    """Files of an OCI image layout directory."""

    def __init__(self, path):
        self.where = path
        if not os.path.isdir(path):
            raise ImageError(f"{path}: not an OCI image layout (not a directory)")

    def has(self, name):
        return os.path.isfile(os.path.join(self.where, name))

    def open(self, name) -> BinaryIO:
        try:
            return open(os.path.join(self.where, name), "rb")
        except OSError as exc:
            raise ImageError(f"{self.where}: {name}: {exc.strerror}") from None


class _ArchiveBlobs:
    """Files of a tar archive, read in place (nothing is extracted)."""

    def __init__(self, path, archive):
        self.where = path
        self._members = {os.path.normpath(m.name): m for m in archive.getmembers() if m.isfile()}
        self._archive = archive

    def has(self, name):
        return os.path.normpath(name) in self._members

    def open(self, name) -> BinaryIO:
        member = self._members.get(os.path.normpath(name))
        if member is None:
            raise ImageError(f"{self.where}: {name}: not in the archive")
        return self._archive.extractfile(member)


def _read_json(blobs, name, digest=None):
    with blobs.open(name) as f:
        data = f.read(_MAX_JSON + 1)
    if len(data) > _MAX_JSON:
        raise ImageError(f"{blobs.where}: {name}: larger than {_MAX_JSON} bytes")
    if digest is not None and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise ImageError(f"{blobs.where}: {name}: content does not match its digest {digest}")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ImageError(f"{blobs.where}: {name}: not JSON: {exc}") from None
    return doc


def _blob_name(descriptor, where):
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ImageError(f"{where}: descriptor {descriptor!r}: expected a sha256 digest")
    return digest, "blobs/sha256/" + digest[7:]


_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}


def _pick(manifests, tag, where):
    """The one manifest descriptor of an index to use."""
    if not isinstance(manifests, list):
        raise ImageError(f"{where}: index.json: manifests: expected a list")
    if tag is not None:
        found = [m for m in manifests if isinstance(m, dict) and (m.get("annotations") or {})
                 .get("org.opencontainers.image.ref.name") in (tag, tag.rpartition(":")[2])]
        if not found:
            raise ImageError(f"{where}: no image tagged {tag!r}")
        manifests = found[:1]
    arch = _ARCH.get(os.uname().machine, os.uname().machine)
    usable = [m for m in manifests if isinstance(m, dict) and
              (m.get("platform") or {}).get("architecture", arch) == arch]
    if len(usable) != 1:
        names = [(m.get("annotations") or {}).get("org.opencontainers.image.ref.name")
                 for m in manifests if isinstance(m, dict)]
        raise ImageError(f"{where}: {len(usable)} images for {arch}: name one with tag= "
                         f"(tags: {names})")
    return usable[0]


def _load(blobs, where, tag, root):
    """An OCI layout (a directory or an oci-archive): index -> manifest -> layers."""
    descriptor = _pick(_read_json(blobs, "index.json").get("manifests"), tag, where)
    for _ in range(8):                       # an index of indexes (multi-platform)
        digest, name = _blob_name(descriptor, where)
        doc = _read_json(blobs, name, digest)
        if "manifests" not in doc:
            break
        descriptor = _pick(doc["manifests"], None, where)
    else:
        raise ImageError(f"{where}: image indexes nested too deeply")
    config_digest, config_name = _blob_name(doc.get("config"), where)
    config = _read_json(blobs, config_name, config_digest)
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ImageError(f"{where}: manifest {digest}: layers: expected a list")
    ref = tag or (descriptor.get("annotations") or {}).get("org.opencontainers.image.ref.name", "")
    return _unpack(blobs, where, [_blob_name(d, where) for d in layers], config, ref, root)


def _load_docker(blobs, where, tag, root):
    """A docker-archive: manifest.json names the config and the layer tars."""
    entries = _read_json(blobs, "manifest.json")
    if not isinstance(entries, list) or not entries:
        raise ImageError(f"{where}: manifest.json: expected a list of images")
    if tag is not None:
        entries = [e for e in entries if isinstance(e, dict) and
                   any(t in (tag, f"localhost/{tag}") or t.endswith("/" + tag)
                       for t in e.get("RepoTags") or ())]
        if not entries:
            raise ImageError(f"{where}: no image tagged {tag!r}")
    elif len(entries) > 1:
        raise ImageError(f"{where}: {len(entries)} images: name one with tag=")
    entry = entries[0]
    if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
            or not isinstance(entry.get("Layers"), list):
        raise ImageError(f"{where}: manifest.json: an entry without Config or Layers")
    config = _read_json(blobs, entry["Config"])
    ref = tag or next(iter(entry.get("RepoTags") or ()), "")
    # docker-archive gives no digest of the layer files (the config's diff ids are checked)
    return _unpack(blobs, where, [(None, name) for name in entry["Layers"]], config, ref, root)


# -- unpacking ---------------------------------------------------------------------------


def _chain_id(diff_ids):
    chain = diff_ids[0]
    for diff in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {diff}".encode()).hexdigest()
    return chain


def _unpack(blobs, where, layers, config, ref, root):
    try:
        defaults = ImageConfig.from_json(config)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    except (ValueError, AttributeError) as exc:
        raise ImageError(f"{where}: image config: {exc}") from None
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers) or not layers or \
            not all(isinstance(d, str) and _DIGEST.fullmatch(d) for d in diff_ids):
        raise ImageError(f"{where}: image config: rootfs.diff_ids must be one sha256 digest "
                         f"per layer ({len(layers)} layers)")
    store = store_dir(root)
    chain = _chain_id(diff_ids)
    final = os.path.join(store, "sha256", chain[7:])
    image = Image(final, chain, defaults, ref)
    if os.path.isdir(final):
        return image                         # unpacked before: trees are immutable
    _make_store(store)
    tmp = os.path.join(store, "tmp-" + secrets.token_hex(8))
    os.mkdir(tmp, 0o700)
    try:
        tree_fd = os.open(tmp, _DIR)
        try:
            for (digest, name), diff_id in zip(layers, diff_ids):
                with blobs.open(name) as raw:
                    apply_layer(raw, tree_fd, f"{where}: layer {name}", digest, diff_id)
        finally:
            os.close(tree_fd)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            remove_tree(tmp)                 # another process unpacked it meanwhile
    except BaseException as exc:
        remove_tree(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, ContainerError):
            raise ImageError(f"{where}: unpacking into {store}: {exc}") from None
        raise
    return image


def _make_store(store):
    """The store's directories, made 0700 where missing; refused when another user owns
    them or may write in them (as Factory refuses such a root)."""
    os.makedirs(os.path.dirname(store), mode=0o700, exist_ok=True)
    for path in (os.path.dirname(store), store, os.path.join(store, "sha256")):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise ImageError(f"image store {path}: not a directory of uid {os.geteuid()} "
                             "that only it may write")


def remove_tree(path: str) -> None:
    """rmtree, after giving the owner back what a layer made read-only to it (an
    unprivileged owner needs write and search permission on a directory to empty it;
    root does not). Symlinks are never followed."""
    if not os.path.lexists(path):
        return
    if os.geteuid() != 0 and not os.path.islink(path):
        os.chmod(path, 0o700)
        for top, dirs, _ in os.walk(path):
            for name in dirs:
                if not os.path.islink(os.path.join(top, name)):
                    os.chmod(os.path.join(top, name), 0o700)
    shutil.rmtree(path)


class _Hashing:
    """A reader that hashes what passes through it."""

    def __init__(self, f):
        self._f = f
        self.hash = hashlib.sha256()

    def read(self, size=-1):
        data = self._f.read(size)
        self.hash.update(data)
        return data

    def drain(self):
        while self.read(_CHUNK):
            pass
        return "sha256:" + self.hash.hexdigest()


def _decompressed(raw, head, where):
    """A reader of the layer's tar stream (gzip, zstd or none, by `head`, its first
    bytes)."""
    if head[:2] == b"\x1f\x8b":
        import gzip
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head == b"\x28\xb5\x2f\xfd":
        try:
            from compression import zstd           # Python 3.14
            return zstd.ZstdFile(raw)
        except ImportError:
            pass
        try:
            import zstandard
        except ImportError:
            raise ImageError(f"{where}: a zstd layer: install the zstandard module (pip "
                             "install 'pycontainer-runtime[zstd]')") from None
        return zstandard.ZstdDecompressor().stream_reader(raw)
    return raw


def apply_layer(raw, tree_fd, where, digest=None, diff_id=None):
    """Apply one layer blob (a file object, seekable) onto the tree open at `tree_fd`,
    checking its digest and diff id when given. Raises ImageError naming `where` and the
    entry for anything refused; the caller removes the tree then."""
    import tarfile
    head = raw.read(4)
    raw.seek(0)
    blob = _Hashing(raw)
    stream = _Hashing(_decompressed(blob, head, where))
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            _Applier(tar, tree_fd, where).run()
        got = stream.drain()
        if diff_id is not None and got != diff_id:
            raise ImageError(f"{where}: uncompressed content {got} does not match its diff "
                             f"id {diff_id}")
        if digest is not None and blob.drain() != digest:
            raise ImageError(f"{where}: content does not match its digest {digest}")
    except ImageError:
        raise
    except OSError as exc:
        if exc.errno is not None:                 # the store's disk, not the layer
            raise
        raise ImageError(f"{where}: not a valid layer: {exc}") from None
    except Exception as exc:    # tarfile's, zlib's, zstd's: what a damaged blob raises
        raise ImageError(f"{where}: not a valid layer: {exc}") from None


class _Applier:
    """One layer's entries applied to the tree, as the image spec's changeset rules say."""

    def __init__(self, tar, tree_fd, where):
        self.tar = tar
        self.tree_fd = tree_fd
        self.where = where
        self.made = set()        # paths this layer made: its own whiteouts do not touch them
        self.dirs = []           # (path, member): modes and times set once the layer is in
        self.root = os.geteuid() == 0

    def refuse(self, name, why):
        raise ImageError(f"{self.where}: entry {name!r}: {why}")

    def run(self):
        for count, member in enumerate(self.tar, 1):
            if count > MAX_ENTRIES:
                self.refuse(member.name, f"more than {MAX_ENTRIES} entries in one layer")
            self.entry(member)
        for path, member in reversed(self.dirs):
            fd = self.open_dir(path, member.name) if path else os.dup(self.tree_fd)
            try:
                self.attributes(fd, member)
            finally:
                os.close(fd)

    def clean(self, name, entry=None):
        """The path `name` relative to the tree ('' for the tree itself): the entry's
        own, or (entry given) the target of the hard link `entry`."""
        what = "" if entry is None else f"hard link to {name!r}: "
        entry = name if entry is None else entry
        if "\0" in name:
            self.refuse(entry, what + "a NUL byte in the name")
        if name.startswith("/"):
            self.refuse(entry, what + "an absolute path")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            self.refuse(entry, what + "a '..' component (outside the image)")
        return "/".join(parts)

    def open_dir(self, path, name, create=False):
        """The directory `path` of the tree, opened one component at a time, never through
        a symlink; missing ones are made (0755) when `create`."""
        fd = os.dup(self.tree_fd)
        try:
            for part in path.split("/") if path else ():
                try:
                    nxt = os.open(part, _DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    nxt = os.open(part, _DIR, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        self.refuse(name, f"its parent {path!r} goes through a symlink or a "
                                          "non-directory")
                    raise
                os.close(fd)
                fd = nxt
            return fd
        except BaseException:
            os.close(fd)
            raise

    def entry(self, m):
        path = self.clean(m.name)
        parent, _, base = path.rpartition("/")
        if base.startswith(".wh."):
            return self.whiteout(m, parent, base)
        if not path:                                 # "./": the tree itself
            if not m.isdir():
                self.refuse(m.name, "the image's root is not a directory")
            self.dirs.append(("", m))
            return
        if m.ischr() or m.isblk():
            self.refuse(m.name, "a device node (the runtime makes a container's /dev)")
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.isfifo()):
            self.refuse(m.name, f"an entry of unknown type {m.type!r}")
        fd = self.open_dir(parent, m.name, create=True)
        try:
            self.make(fd, base, m)
        finally:
            os.close(fd)
        self.made.add(path)

    def make(self, fd, base, m):
        try:
            old = os.stat(base, dir_fd=fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            old = None
        if m.isdir():
            if old is None or not stat.S_ISDIR(old):
                if old is not None:
                    os.unlink(base, dir_fd=fd)
                os.mkdir(base, 0o700, dir_fd=fd)
            self.dirs.append((self.clean(m.name), m))
            return
        if old is not None:
            _remove_at(fd, base)
        if m.issym():
            os.symlink(m.linkname, base, dir_fd=fd)
        elif m.islnk():
            target = self.clean(m.linkname, m.name)
            if not target or target not in self.made and not self.exists(target):
                self.refuse(m.name, f"a hard link to {m.linkname!r}, which is not in the image")
            tparent, _, tbase = target.rpartition("/")
            tfd = self.open_dir(tparent, m.name)
            try:
                os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=fd, follow_symlinks=False)
            except (IsADirectoryError, PermissionError):
                self.refuse(m.name, f"a hard link to directory {m.linkname!r}")
            finally:
                os.close(tfd)
            return                                   # the target's attributes are its own
        elif m.isfifo():
            os.mkfifo(base, 0o600, dir_fd=fd)
        else:
            self.write(fd, base, m)
            return
        self.attributes_at(fd, base, m)

    def exists(self, path):
        parent, _, base = path.rpartition("/")
        try:
            fd = self.open_dir(parent, path)
        except (FileNotFoundError, ImageError):
            return False
        try:
            return not stat.S_ISDIR(os.stat(base, dir_fd=fd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return False
        finally:
            os.close(fd)

    def write(self, dir_fd, base, m):
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dir_fd)
        try:
            src = self.tar.extractfile(m)
            left = m.size
            while left > 0:
                chunk = src.read(min(left, _CHUNK))
                if not chunk:
                    self.refuse(m.name, "the layer ends inside this file")
                _write_all(fd, chunk)
                left -= len(chunk)
            self.attributes(fd, m)
        finally:
            os.close(fd)

    def attributes(self, fd, m):
        """Owner (as root), mode and mtime of an open file or directory."""
        if self.root:
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)
        os.utime(fd, ns=_times(m))

    def attributes_at(self, dir_fd, base, m):
        """Owner, mode (not for symlinks) and mtime of a symlink or FIFO, not followed."""
        if self.root:
            os.chown(base, m.uid, m.gid, dir_fd=dir_fd, follow_symlinks=False)
        if not m.issym():
            os.chmod(base, m.mode & 0o7777, dir_fd=dir_fd, follow_symlinks=False)
        os.utime(base, ns=_times(m), dir_fd=dir_fd, follow_symlinks=False)

    def whiteout(self, m, parent, base):
        """`.wh.<name>`: remove <name> of the layers below; `.wh..wh..opq`: remove every
        entry of the directory that the layers below made."""
        try:
            fd = self.open_dir(parent, m.name)
        except FileNotFoundError:
            return                                   # nothing below to hide
        try:
            if base == ".wh..wh..opq":
                for name in os.listdir(fd):
                    if (f"{parent}/{name}" if parent else name) not in self.made:
                        _remove_at(fd, name)
            elif not base.startswith(".wh..wh."):    # .wh..wh.plnk and the like: aufs's
                name = base[len(".wh."):]
                if name in ("", ".", "..") or "/" in name:
                    self.refuse(m.name, "a whiteout of no single entry")
                if (f"{parent}/{name}" if parent else name) not in self.made:
                    _remove_at(fd, name, missing_ok=True)
        finally:
            os.close(fd)


def _times(m):
    """(atime, mtime) in ns from a member's mtime, clamped to what utime takes."""
    ns = min(max(int(m.mtime), 0), 1 << 33) * 1_000_000_000
    return ns, ns


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _remove_at(dir_fd, name, missing_ok=False):
    """Remove the entry `name` of the directory dir_fd, a tree included, never following."""
    try:
        if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            shutil.rmtree(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        if not missing_ok:
            raise


def _id_table(rootfs, rel):
    """{name: (id, gid or id)} of an /etc/passwd or /etc/group in the tree, {} if none."""
    parent, _, base = rel.rpartition("/")
    fd = os.open(rootfs, _DIR)
    try:
        for part in parent.split("/"):
            nxt = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
        ffd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        with open(ffd, "rb") as f:
            text = f.read(_MAX_JSON).decode("utf-8", "replace")
    except OSError:
        return {}
    finally:
        os.close(fd)
    out: dict[str, Any] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            gid = fields[3] if len(fields) > 3 and fields[3].isdigit() else fields[2]
            out.setdefault(fields[0], (int(fields[2]), int(gid)))
    return out


def as_image(value: Any) -> Image:
    """Config.image's value (an Image, or its dict from state.json) as an Image."""
    if isinstance(value, dict):
        try:
            return Image(**value)
        except TypeError as exc:
            raise ConfigInvalidError("image", value, f"not an Image: {exc}") from None
    if not isinstance(value, Image):
        raise ConfigInvalidError("image", value, "expected a pycontainer.Image "
                                 "(Image.from_archive, Image.from_oci_layout)")
    return value

