"""Factory: creates and loads containers by id, from any process.

Each container lives in `<root>/<id>/` (mode 0700): state.json, and the flock of that
directory serialises mutations across threads and processes.

The state root is the caller's: created 0700, and refused when it is a symlink, owned by
someone else or writable by group or others (whoever can write in it could plant state).
Entries in it are opened relative to it and never followed: a symlink, or a directory
that is not ours, is reported as damaged, and destroying it removes the entry only.
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import stat
import time
import warnings
from typing import Any, Optional, Union

from . import cgroups, namespaces, network, overlay
from .config import Config
from .container import Container, device_policy, lock_container
from .errors import (ConfigInvalidError, ContainerError, ContainerNotExistError,
                     ContainerSystemError, IdInUseError, in_context, system_error_from)
from .pool import POOL_ROOT, SANDBOX_ID, Pool, leftovers, rename_noreplace
from .security import IdMap
from .state import (DIR_OPEN, MAX_NAME, STATE_FILE, StateInvalidError, StateRecord, check_id,
                    default_root, not_ours, read_state, remove_state_dir,
                    write_state)


log = logging.getLogger("pycontainer")
_LONG_PREFIX = ".long-"


def _scope_of(root):
    """The cgroup name prefix of a state root's containers (Factory._cgroup_scope)."""
    return None if root == default_root() else hashlib.sha256(root.encode()).hexdigest()[:8]


def rootless_config(config, container_id, scope):
    """What an unprivileged caller can run: its own uid and gid mapped to root in a user
    namespace (unless the Config brings mappings of its own), and no cgroup limits unless
    cgroups are delegated to it. No veth: making one needs root on the host."""
    for i, net in enumerate(config.networks):
        if net.type == "veth":
            raise ConfigInvalidError(f"networks[{i}].type", net.type,
                                     f"a veth needs root on the host (uid {os.geteuid()})",
                                     container_id=container_id, operation="create")
    if "user" not in config.namespaces:
        config = dataclasses.replace(
            config, namespaces=("user",) + tuple(config.namespaces),
            uid_mappings=(IdMap(0, os.geteuid(), 1),), gid_mappings=(IdMap(0, os.getegid(), 1),))
    if config.resources is not None and not cgroups.delegated(container_id, config.cgroup_parent,
                                                              scope, config.cgroup_path):
        raise ConfigInvalidError("resources", config.resources,
                                 f"no cgroups are delegated to uid {os.geteuid()}: "
                                 "limits cannot be enforced", container_id=container_id,
                                 operation="create")
    return config


def check_host(config, container_id):
    """What a Config asks of the host, checked before create makes anything (a Config is a
    pure value and never looks): its rootfs is a directory, and each namespace it joins is
    a namespace file of that kind. start() finds out again, in the kernel, when a path has
    changed since: it reports the stage (mount, setns) and errno."""
    try:
        if config.rootfs is not None and not os.path.isdir(config.rootfs):
            raise ConfigInvalidError("rootfs", config.rootfs, "is not a directory")
        if config.overlay_lower is not None and config.uid_mappings and not any(
                m.container_id == 0 and m.host_id == os.geteuid() for m in config.uid_mappings):
            # Its tree and writable layer belong to this uid, in a state directory only it
            # may enter: another uid could neither reach nor write them.
            raise ConfigInvalidError("uid_mappings", config.uid_mappings, "a container on an "
                                     "image or with rootfs_overlay needs its root mapped to "
                                     f"uid {os.geteuid()}, this process's")
        if config.image is not None and not os.path.isdir(config.image.rootfs):
            raise ConfigInvalidError("image", config.image.name or config.image.chain_id,
                                     f"its tree {config.image.rootfs} is not in the store "
                                     "(removed?): load the image again")
        for name, path in config.namespace_paths.items():
            namespaces.check_file(name, path)
    except ConfigInvalidError as exc:
        raise in_context(exc, container_id, "create") from None


def _locked_by_someone(root_fd, name):
    try:
        fd = os.open(name, DIR_OPEN, dir_fd=root_fd)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _kind(root_fd, name):
    """What a directory entry that is not a directory is, for messages."""
    try:
        mode = os.stat(name, dir_fd=root_fd, follow_symlinks=False).st_mode
    except OSError:
        return "not a directory"
    for test, what in ((stat.S_ISLNK, "a symlink"), (stat.S_ISREG, "a regular file"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a directory"


def _pool_entry(name):
    """The sandbox id of a name list_broken gives a pool's leftover (".pool/<id>"), or
    None."""
    if isinstance(name, str) and name.startswith(POOL_ROOT + "/"):
        sandbox_id = name[len(POOL_ROOT) + 1:]
        if SANDBOX_ID.fullmatch(sandbox_id):
            return sandbox_id
    return None


class Factory:
    def __init__(self, root: Union[None, str, "os.PathLike[str]"] = None) -> None:
        self.root = os.path.abspath(os.fspath(root) if root else default_root())
        # Containers of the default root have cgroups named by id alone; another root's
        # are prefixed with a tag of it, so equal ids in two roots do not collide.
        self._cgroup_scope = _scope_of(self.root)

    def _cgroup_identity(self, extra, container_id):
        """(id, scope) the container's cgroups were made for: its own, or for a pooled
        container the sandbox's it was prepared as (in the pool root, before its id was
        known: pycontainer.pool). Only a sandbox id of the pool's form is taken from the
        record."""
        pooled = extra.get("pool") if isinstance(extra, dict) else None
        sandbox = pooled.get("sandbox") if isinstance(pooled, dict) else None
        if isinstance(sandbox, str) and SANDBOX_ID.fullmatch(sandbox):
            return sandbox, _scope_of(os.path.join(self.root, POOL_ROOT))
        return container_id, self._cgroup_scope

    def __repr__(self) -> str:
        return f"<Factory root={self.root!r}>"

    def _name(self, container_id):
        """The state directory's name in the root. An id longer than a file name may be
        is stored under a hash of it; such names start with '.', which no id does."""
        name = check_id(container_id)
        if len(name) > MAX_NAME:
            name = _LONG_PREFIX + hashlib.sha256(name.encode()).hexdigest()
        return name

    def _dir(self, container_id):
        """The state directory's path."""
        return os.path.join(self.root, self._name(container_id))

    # -- the state root and its entries -------------------------------------------------

    def _open_root(self, container_id, operation, create=False):
        """The state root, opened (not followed if a symlink) and checked to be ours alone;
        None when it does not exist, unless `create`: then it is made, 0700."""
        made = False
        try:
            fd = os.open(self.root, DIR_OPEN)
        except FileNotFoundError:
            if not create:
                return None
            fd, made = self._make_root(container_id, operation)
        except OSError as exc:
            what = f"state root {self.root}"
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                what += f" is {_kind(None, self.root)}"
            raise ContainerSystemError(exc.errno, what, container_id=container_id,
                                       operation=operation) from None
        try:
            if made:
                os.fchmod(fd, 0o700)        # exactly, whatever the umask took away
            problem = not_ours(os.fstat(fd))
            if problem:
                raise ContainerSystemError(errno.EACCES, f"state root {self.root} {problem}",
                                           container_id=container_id, operation=operation)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _make_root(self, container_id, operation):
        """(descriptor, made by us) of a new state root: its parents as `mkdir -p` makes
        them, the root itself 0700."""
        try:
            os.makedirs(os.path.dirname(self.root), exist_ok=True)
            try:
                os.mkdir(self.root, 0o700)
                made = True
            except FileExistsError:         # another process's first container
                made = False
            return os.open(self.root, DIR_OPEN), made
        except OSError as exc:
            raise ContainerSystemError(exc.errno, f"make state root {self.root}",
                                       container_id=container_id, operation=operation) from None

    def _open_entry(self, root_fd, name, container_id, operation):
        """The state directory `name` in the root, opened: ContainerNotExistError when there
        is none, StateInvalidError when the entry is not a directory of ours."""
        try:
            fd = os.open(name, DIR_OPEN, dir_fd=root_fd)
        except FileNotFoundError:
            raise ContainerNotExistError("no such container", container_id=container_id,
                                         operation=operation) from None
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise StateInvalidError(f"{os.path.join(self.root, name)} is "
                                        f"{_kind(root_fd, name)}, not a state directory",
                                        container_id=container_id, operation=operation) from None
            raise system_error_from(exc, os.path.join(self.root, name),
                                    container_id=container_id, operation=operation) from None
        try:
            problem = not_ours(os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        if problem:
            os.close(fd)
            raise StateInvalidError(f"{os.path.join(self.root, name)} {problem}",
                                    container_id=container_id, operation=operation)
        return fd

    def _entries(self, operation):
        """(root descriptor, [(name, is a directory)]) of the root, or (None, [])."""
        root_fd = self._open_root(None, operation)
        if root_fd is None:
            return None, []
        try:
            with os.scandir(root_fd) as it:
                return root_fd, [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        except BaseException:
            os.close(root_fd)
            raise

    # -- the interface ------------------------------------------------------------------

    def create(self, container_id: str, config: Config,
               extra: Optional[dict[str, Any]] = None) -> Container:
        """Make the container's cgroups and state; no process runs until start().
        `extra`: a JSON-able dict stored with the state for the caller (Container.extra();
        the OCI layer keeps the bundle path, annotations and hooks there)."""
        begun = time.monotonic()
        name = self._name(container_id)
        state_dir = os.path.join(self.root, name)
        if not isinstance(config, Config):
            raise ConfigInvalidError("config", config, "expected a pycontainer.Config",
                                     container_id=container_id, operation="create")
        if extra is not None and not isinstance(extra, dict):
            raise ConfigInvalidError("extra", extra, "expected a dict",
                                     container_id=container_id, operation="create")
        if extra:
            # As state.json will give it back (str keys, lists): the creating handle's
            # extra() then says what load() says, and what JSON cannot hold fails now.
            try:
                extra = json.loads(json.dumps(extra))
            except (TypeError, ValueError, RecursionError) as exc:
                raise ConfigInvalidError("extra", extra, f"not JSON-able: {exc}",
                                         container_id=container_id, operation="create") from None
        check_host(config, container_id)
        rootless = os.geteuid() != 0
        if rootless:
            config = rootless_config(config, container_id, self._cgroup_scope)
        if config.veth_networks:
            try:
                network.check_available()
            except ContainerError as exc:
                raise in_context(exc, container_id, "create") from None
        if config.cgroup_path is not None and not (rootless and not cgroups.delegated(
                container_id, path=config.cgroup_path)):
            self._check_cgroup_path_free(container_id, config.cgroup_path)
        root_fd = self._open_root(container_id, "create", create=True)
        try:
            try:
                os.mkdir(name, 0o700, dir_fd=root_fd)
            except FileExistsError:
                raise IdInUseError("a container with this id exists", container_id=container_id,
                                   operation="create") from None
            except OSError as exc:
                raise system_error_from(exc, state_dir, container_id=container_id,
                                        operation="create") from None
            try:
                dir_fd = os.open(name, DIR_OPEN, dir_fd=root_fd)
            except OSError as exc:            # EMFILE: nothing may stay
                os.rmdir(name, dir_fd=root_fd)
                raise system_error_from(exc, state_dir, container_id=container_id,
                                        operation="create") from None
            try:
                container = self._create_in(dir_fd, root_fd, state_dir, container_id, config,
                                            extra, rootless)
            finally:
                os.close(dir_fd)
            log.debug("create %s in %.2f ms", container_id, (time.monotonic() - begun) * 1e3)
            return container
        finally:
            os.close(root_fd)

    async def create_async(self, container_id: str, config: Config,
                           extra: Optional[dict[str, Any]] = None) -> Container:
        """create() without blocking the running loop (pycontainer.aio.off_loop). A
        create whose awaiting task is cancelled is destroyed again."""
        import asyncio
        from . import aio          # lazily: asyncio is not the command line's
        return await aio.off_loop(asyncio.get_running_loop(), self.create, container_id,
                                  config, extra, undo=Container.destroy)

    def _check_cgroup_path_free(self, container_id, path):
        """An exact cgroup path must be a new cgroup: EBUSY, naming the container of this
        root that uses it when there is one, before anything is made. (The manager's
        create() checks again, for a container made meanwhile.)"""
        taken = cgroups.new_manager(container_id, path=path).existing()
        if not taken:
            return
        user = None
        for other in self.list():
            try:
                if set(self.load(other).internal.cgroups.dirs()) & set(taken):
                    user = other
                    break
            except ContainerError:
                continue                 # being created or destroyed, or damaged
        what = f"container {user!r} uses it" if user is not None else \
            f"cgroup {taken[0]} exists already: pycontainer does not take over cgroups it " \
            "did not make"
        raise ContainerSystemError(errno.EBUSY, f"cgroup path {path}: {what}",
                                   container_id=container_id, operation="create")

    def _create_in(self, dir_fd, root_fd, state_dir, container_id, config, extra, rootless):
        manager = None
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX)
            if rootless and not cgroups.delegated(container_id, config.cgroup_parent,
                                                  self._cgroup_scope, config.cgroup_path):
                if "pid" not in config.new_namespaces:
                    raise in_context(ConfigInvalidError(
                        "namespaces", list(config.namespaces), "without cgroups (none are "
                        "delegated) a container needs a pid namespace of its own: it is "
                        "how its processes are found and killed"), container_id, "create")
                manager = cgroups.NullManager(container_id)
                message = (f"container {container_id!r}: no cgroups are delegated to "
                           f"uid {os.geteuid()}; running without cgroups (no limits, "
                           "pause, or cgroup statistics)")
                log.warning("%s", message)
                warnings.warn(message, RuntimeWarning, stacklevel=3)
            else:
                manager = cgroups.new_manager(container_id, config.cgroup_parent,
                                              config.resources, self._cgroup_scope,
                                              config.cgroup_path)
            # The record first: if this process dies while making the cgroups, the
            # container can still be loaded and destroyed by anyone.
            record = StateRecord(id=container_id, nonce=secrets.token_hex(8),
                                 created=time.time(), config=config.to_dict(),
                                 cgroups=manager.to_record(),
                                 extra={"user": dict(extra)} if extra else {})
            written = write_state(state_dir, record)
            # An unprivileged user cannot restrict devices; the user namespace does.
            manager.create(device_rules=None if rootless else device_policy(config))
            if config.overlay_lower is not None:
                overlay.setup(dir_fd, config.overlay_lower)
            return Container(state_dir, record, config, written, manager)
        except BaseException as exc:
            # Nothing half-made stays: the writable layer, cgroups, then the state directory.
            if config.overlay_lower is not None:
                try:
                    overlay.teardown(dir_fd)
                except Exception:
                    pass
            if manager is not None:
                try:
                    manager.destroy()
                except Exception:
                    pass
            remove_state_dir(dir_fd, state_dir, root_fd)
            raise in_context(exc, container_id, "create") from None

    def pool(self, config: Config, size: int = 8, refill_below: Optional[int] = None
             ) -> Pool:
        """A Pool of `size` prepared sandboxes of `config` in this root (pycontainer.pool)."""
        return Pool(self, config, size, refill_below)

    def adopt(self, sandbox, container_id):
        """Pooled sandboxes (pycontainer.pool): give `sandbox`, a container of this root's
        pool root (Factory(<root>/.pool)) whose init is parked, the id `container_id`. Its
        record takes the id and its state directory moves here under it, in one rename
        that fails if the id is taken (load() by the id finds it whole or not at all); its
        cgroups keep the sandbox's name (see _cgroup_identity). Returns the named
        Container, sharing the sandbox's Config object. IdInUseError,
        and the sandbox is as it was, when the id is taken."""
        name = self._name(container_id)
        state_dir = os.path.join(self.root, name)
        os.close(self._open_root(container_id, "create", create=True))   # as create() checks it
        sandbox_dir = sandbox.internal.state_dir
        with lock_container(sandbox_dir, sandbox.id, "create"):
            old = sandbox.internal.record("create")
            extra = dict(old.extra)
            # What the pool keeps (who prepared it: pycontainer.pool.leftovers) moves out
            # of the caller's extra(), which is {} as an unpooled container's.
            user = dict(extra.pop("user", None) or {})
            extra["pool"] = {"sandbox": sandbox.id, "owner": user.pop("owner", None)}
            if user:
                extra["user"] = user
            record = old.replace(id=container_id, extra=extra)
            written = write_state(sandbox_dir, record)
            try:
                rename_noreplace(sandbox_dir, state_dir)
            except OSError as exc:
                write_state(sandbox_dir, old)
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise IdInUseError("a container with this id exists",
                                       container_id=container_id, operation="create") from None
                raise system_error_from(exc, state_dir, container_id=container_id,
                                        operation="create") from None
        config = sandbox.config
        # A manager of its own: the sandbox's handle closes its own when it is collected.
        manager = cgroups.load_manager(record.cgroups, resources=config.resources)
        return Container(state_dir, record, config, written, manager)

    def load(self, container_id: str) -> Container:
        """The container with this id, as any process sees it."""
        name = self._name(container_id)
        root_fd = self._open_root(container_id, "load")
        if root_fd is None:
            raise ContainerNotExistError("no such container", container_id=container_id)
        try:
            return self._load_at(root_fd, name, container_id)
        finally:
            os.close(root_fd)

    def _load_at(self, root_fd, name, container_id):
        state_dir = os.path.join(self.root, name)
        dir_fd = self._open_entry(root_fd, name, container_id, "load")
        try:
            record = read_state(state_dir, container_id, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        try:
            config = Config.from_dict(record.config)
            # The cgroups the record names must be those create() made for this id.
            cg_id, scope = self._cgroup_identity(record.extra, container_id)
            manager = cgroups.load_manager(record.cgroups, cg_id, config.cgroup_parent, scope,
                                           config.resources, config.cgroup_path)
            return Container(state_dir, record, config, manager=manager)
        except RecursionError:
            raise StateInvalidError(f"{os.path.join(state_dir, STATE_FILE)}: nested too deeply",
                                    container_id=container_id, operation="load") from None
        except ContainerError as exc:
            # A config or cgroup record this version cannot take: the state is at fault.
            raise StateInvalidError(f"{os.path.join(state_dir, STATE_FILE)}: {exc.detail}",
                                    container_id=container_id, operation="load") from None

    def destroy(self, container_id: str) -> None:
        """Remove the container with this id even when it cannot be loaded (its state is
        damaged, from a newer version, or its creator died before writing it): kill what
        runs in its cgroups, remove them and the state directory. An entry that is not a
        state directory of ours (a planted symlink) is removed, never followed. Idempotent.
        ".pool/<sandbox id>" (list_broken) destroys that sandbox of the pool root."""
        pooled = _pool_entry(container_id)
        if pooled is not None:
            type(self)(os.path.join(self.root, POOL_ROOT)).destroy(pooled)
            return
        name = self._name(container_id)
        root_fd = self._open_root(container_id, "destroy")
        if root_fd is None:
            return
        try:
            try:
                container = self._load_at(root_fd, name, container_id)
            except (ContainerNotExistError, StateInvalidError):
                self._destroy_damaged(root_fd, name, container_id)
            else:
                container.destroy()
        except ContainerNotExistError:
            pass                      # removed by someone else meanwhile
        except Exception as exc:
            raise in_context(exc, container_id, "destroy") from None
        finally:
            os.close(root_fd)

    def _destroy_damaged(self, root_fd, name, container_id):
        """destroy() of an entry that cannot be loaded (or has no state.json yet)."""
        try:
            dir_fd = os.open(name, DIR_OPEN, dir_fd=root_fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            try:
                os.unlink(name, dir_fd=root_fd)      # the entry itself, not what it names
            except FileNotFoundError:
                pass
            return
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX)       # a create in progress finishes first
            st = os.fstat(dir_fd)
            try:
                now = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
            except FileNotFoundError:
                return
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                return                # destroyed meanwhile (and maybe made again): not ours
            self._damaged_manager(dir_fd, name, container_id, not_ours(st)).destroy()
            overlay.teardown(dir_fd)                 # whether or not the record says so
            shutil.rmtree(name, dir_fd=root_fd)      # what is in it is never followed
        finally:
            os.close(dir_fd)

    def _damaged_manager(self, dir_fd, name, container_id, not_ours):
        """The cgroups of a container that cannot be loaded: those its record names when it
        can still be read and they are where create() put them, else where create() puts
        them by default (a container made with Config.cgroup_parent or cgroup_path cannot
        be found then)."""
        if not not_ours:
            try:
                record = read_state(os.path.join(self.root, name), container_id, dir_fd=dir_fd)
                parent, path = (record.config.get(k) for k in ("cgroup_parent", "cgroup_path"))
                cg_id, scope = self._cgroup_identity(record.extra, container_id)
                return cgroups.load_manager(record.cgroups, cg_id,
                                            parent if isinstance(parent, str) else None,
                                            scope,
                                            path=path if isinstance(path, str) else None)
            except ContainerError:
                pass
        return cgroups.new_manager(container_id, scope=self._cgroup_scope)

    def list_broken(self) -> dict[str, str]:
        """{id: reason} for every state directory that cannot be loaded (and every entry
        in the root that is not a state directory). A container whose creator still holds
        its lock is being created, not broken, and is left out. What pools of this root
        left behind (pycontainer.pool.leftovers: sandboxes of a pool whose process died,
        destroyed pooled containers it had not finished removing) is listed as
        ".pool/<sandbox id>", a name no container has, which destroy() takes."""
        root_fd, entries = self._entries("list")
        if root_fd is None:
            return {}
        broken = {}
        try:
            for name, _ in entries:
                if name.startswith(".") and not name.startswith(_LONG_PREFIX):
                    continue
                try:
                    if name.startswith(_LONG_PREFIX):
                        dir_fd = self._open_entry(root_fd, name, name, "load")
                        try:
                            read_state(os.path.join(self.root, name), name, dir_fd=dir_fd)
                        finally:
                            os.close(dir_fd)
                    else:
                        self._load_at(root_fd, name, check_id(name))
                except ContainerNotExistError:
                    if not _locked_by_someone(root_fd, name):
                        broken[name] = "no state.json: its creation was interrupted"
                except ContainerError as exc:
                    broken[name] = exc.detail
        finally:
            os.close(root_fd)
        # What pools of this root left (pycontainer.pool.leftovers), by a name no id has,
        # which destroy() takes.
        for sandbox_id, why in leftovers(self).items():
            broken[f"{POOL_ROOT}/{sandbox_id}"] = f"pool sandbox: {why}"
        return broken

    def list(self) -> list[str]:  # noqa: A003
        """Ids of every entry of the root, sorted: the containers, and entries that are not
        state directories of ours (load() says what is wrong with them; destroy() removes
        them)."""
        root_fd, entries = self._entries("list")
        if root_fd is None:
            return []
        ids = []
        try:
            for name, is_dir in entries:
                if not name.startswith("."):
                    try:
                        ids.append(check_id(name))
                    except ContainerError:
                        pass             # not a name this runtime makes
                elif name.startswith(_LONG_PREFIX) and is_dir:
                    try:
                        dir_fd = self._open_entry(root_fd, name, name, "list")
                        try:
                            ids.append(read_state(os.path.join(self.root, name), name,
                                                  dir_fd=dir_fd).id)
                        finally:
                            os.close(dir_fd)
                    except ContainerError:
                        pass     # being created or destroyed: its id is not known yet
        finally:
            os.close(root_fd)
        return sorted(ids)
