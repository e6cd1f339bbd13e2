"""A container's writable layer over a read-only tree (an image's, or Config.rootfs with
rootfs_overlay=True).

In the container's state directory: `rootfs` (the container's root), `upper` and
`work`. As root, `rootfs` is an overlayfs mount (lowerdir the tree, upperdir and
workdir beside it) made by Factory.create and unmounted by destroy, so writes land in
`upper` and the tree stays as it was. Unprivileged, the kernel allows an overlay mount
only inside a user namespace of the caller's (the container's own, made after create),
so rootless containers get a copy of the tree in `rootfs` instead (same isolation,
a copy's time and space).

The directories are opened relative to the state directory, and overlayfs is given
them as /proc/self/fd paths: no path is parsed by the mount (commas, colons) and no
symlink planted in the state directory is followed.
"""
from __future__ import annotations

import errno
import os
import shutil

from .errors import ContainerSystemError
from .image import remove_tree

__all__ = ["ROOTFS", "merged_dir", "setup", "teardown"]

ROOTFS, UPPER, WORK = "rootfs", "upper", "work"
_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MNT_DETACH, _UMOUNT_NOFOLLOW = 2, 8
_libc = None


def _syscalls():
    global _libc
    if _libc is None:
        import ctypes           # lazily: only containers with an overlay need it
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def merged_dir(state_dir):
    """The container's root: the overlay's mount point (or the rootless copy)."""
    return os.path.join(state_dir, ROOTFS)


def setup(dir_fd, lower):
    """Make the writable layer over `lower` in the state directory open at dir_fd.
    A failure leaves nothing (no mount, no directory) and raises ContainerSystemError."""
    try:
        if os.geteuid() != 0:
            shutil.copytree(lower, f"/proc/self/fd/{dir_fd}/{ROOTFS}", symlinks=True)
            return
        fds = []
        try:
            for name, mode in ((ROOTFS, 0o755), (UPPER, 0o755), (WORK, 0o700)):
                os.mkdir(name, mode, dir_fd=dir_fd)
                fds.append(os.open(name, _PATH, dir_fd=dir_fd))
            fds.append(os.open(lower, _PATH))
            merged, upper, work, low = (f"/proc/self/fd/{fd}" for fd in fds)
            options = f"lowerdir={low},upperdir={upper},workdir={work}".encode()
            libc = _syscalls()
            if libc.mount(b"overlay", merged.encode(), b"overlay", 0, options) != 0:
                err = _errno()
                raise ContainerSystemError(err, f"mount overlay on {ROOTFS} (lowerdir "
                                           f"{lower}): {os.strerror(err)}")
        finally:
            for fd in fds:
                os.close(fd)
    except BaseException as exc:
        teardown(dir_fd)
        if isinstance(exc, OSError) and not isinstance(exc, ContainerSystemError):
            raise ContainerSystemError(exc.errno or errno.EIO,
                                       f"writable layer over {lower}: {exc}") from None
        raise


def teardown(dir_fd):
    """Unmount the overlay (if mounted) and remove rootfs, upper and work from the state
    directory open at dir_fd. Idempotent; what is not there is skipped."""
    if os.geteuid() == 0:
        path = f"/proc/self/fd/{dir_fd}/{ROOTFS}".encode()
        # MNT_DETACH: a mount namespace that copied it meanwhile does not keep it busy.
        if _syscalls().umount2(path, _MNT_DETACH | _UMOUNT_NOFOLLOW) != 0 and \
                _errno() not in (errno.EINVAL, errno.ENOENT):
            err = _errno()
            raise ContainerSystemError(err, f"unmount the overlay on {ROOTFS}: "
                                       f"{os.strerror(err)}")
    for name in (ROOTFS, UPPER, WORK):
        try:
            os.unlink(name, dir_fd=dir_fd)           # a symlink or file planted there
        except FileNotFoundError:
            continue
        except IsADirectoryError:
            remove_tree(f"/proc/self/fd/{dir_fd}/{name}")


def _errno():
    import ctypes
    return ctypes.get_errno()
