"""Factory: creates and loads containers by id, from any process.

Each container lives in `<root>/<id>/` (mode 0700): state.json, and the flock of that
directory serialises mutations across threads and processes.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import secrets
import time
import warnings

from . import cgroups, network
from .config import Config
from .container import Container, device_policy, lock_container, remove_state_dir
from .errors import (ConfigInvalidError, ContainerError, ContainerNotExistError,
                     IdInUseError, in_context,
                     system_error_from)
from .security import IdMap
from .state import (STATE_FILE, StateInvalidError, StateRecord, check_id,
                    read_state, write_state)


_MAX_NAME = 255            # NAME_MAX
_LONG_PREFIX = ".long-"


def default_root():
    if os.geteuid() == 0:
        return "/run/pycontainer"
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    return os.path.join(runtime, "pycontainer")


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
                                                              scope):
        raise ConfigInvalidError("resources", config.resources,
                                 f"no cgroups are delegated to uid {os.geteuid()}: "
                                 "limits cannot be enforced", container_id=container_id,
                                 operation="create")
    return config


def _locked_by_someone(state_dir):
    try:
        fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


class Factory:
    def __init__(self, root=None):
        self.root = os.path.abspath(root or default_root())
        # Containers of the default root have cgroups named by id alone; another root's
        # are prefixed with a tag of it, so equal ids in two roots do not collide.
        self._cgroup_scope = None if self.root == default_root() else \
            hashlib.sha256(self.root.encode()).hexdigest()[:8]

    def _dir(self, container_id):
        """The state directory. An id longer than a file name may be is stored under a
        hash of it; such names start with '.', which no id does."""
        name = check_id(container_id)
        if len(name) > _MAX_NAME:
            name = _LONG_PREFIX + hashlib.sha256(name.encode()).hexdigest()
        return os.path.join(self.root, name)

    def create(self, container_id, config, extra=None):
        """Make the container's cgroups and state; no process runs until start().
        `extra`: a JSON-able dict stored with the state for the caller (Container.extra();
        the OCI layer keeps the bundle path, annotations and hooks there)."""
        state_dir = self._dir(container_id)
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
            except (TypeError, ValueError) as exc:
                raise ConfigInvalidError("extra", extra, f"not JSON-able: {exc}",
                                         container_id=container_id, operation="create") from None
        rootless = os.geteuid() != 0
        if rootless:
            config = rootless_config(config, container_id, self._cgroup_scope)
        if config.veth_networks:
            try:
                network.check_available()
            except ContainerError as exc:
                raise in_context(exc, container_id, "create") from None
        try:
            try:
                os.mkdir(state_dir, 0o700)
            except FileNotFoundError:                  # the root's first container
                os.makedirs(self.root, mode=0o700, exist_ok=True)
                os.mkdir(state_dir, 0o700)
        except FileExistsError:
            raise IdInUseError("a container with this id exists", container_id=container_id,
                               operation="create") from None
        except OSError as exc:
            raise system_error_from(exc, container_id=container_id, operation="create") from None
        manager = None
        try:
            with lock_container(state_dir, container_id, "create"):
                if rootless and not cgroups.delegated(container_id, config.cgroup_parent,
                                                      self._cgroup_scope):
                    manager = cgroups.NullManager(container_id)
                    warnings.warn(f"container {container_id!r}: no cgroups are delegated to "
                                  f"uid {os.geteuid()}; running without cgroups (no limits, "
                                  "pause, or cgroup statistics)", RuntimeWarning, stacklevel=2)
                else:
                    manager = cgroups.new_manager(container_id, config.cgroup_parent,
                                                  config.resources, self._cgroup_scope)
                # The record first: if this process dies while making the cgroups, the
                # container can still be loaded and destroyed by anyone.
                record = StateRecord(id=container_id, nonce=secrets.token_hex(8),
                                     created=time.time(), config=config.to_dict(),
                                     cgroups=manager.to_record(),
                                     extra={"user": dict(extra)} if extra else {})
                written = write_state(state_dir, record)
                # An unprivileged user cannot restrict devices; the user namespace does.
                manager.create(device_rules=None if rootless else device_policy(config))
                return Container(state_dir, record, config, written, manager)
        except BaseException as exc:
            # Nothing half-made stays: cgroups, then the state directory.
            if manager is not None:
                try:
                    manager.destroy()
                except Exception:
                    pass
            remove_state_dir(state_dir)
            raise in_context(exc, container_id, "create") from None

    def load(self, container_id):
        """The container with this id, as any process sees it."""
        state_dir = self._dir(container_id)
        record = read_state(state_dir, container_id)
        try:
            return Container(state_dir, record, Config.from_dict(record.config, stored=True))
        except ContainerError as exc:
            # A config or cgroup record this version cannot take: the state is at fault.
            raise StateInvalidError(f"{os.path.join(state_dir, STATE_FILE)}: {exc.detail}",
                                    container_id=container_id, operation="load") from None

    def destroy(self, container_id):
        """Remove the container with this id even when it cannot be loaded (its state is
        truncated, from a newer version, or its creator died before writing it): kill what
        runs in its cgroups, remove them and the state directory. Idempotent."""
        state_dir = self._dir(container_id)
        try:
            self.load(container_id).destroy()
            return
        except ContainerNotExistError:
            pass
        except ContainerError:
            pass                      # unreadable state: by hand below
        if not os.path.isdir(state_dir):
            return
        try:
            with lock_container(state_dir, container_id, "destroy"):
                try:
                    record = read_state(state_dir, container_id)
                    manager = cgroups.load_manager(record.cgroups)
                except ContainerError:
                    # No usable record: where create() would have put the cgroups (a
                    # container made with Config.cgroup_parent cannot be found this way).
                    manager = cgroups.new_manager(container_id, scope=self._cgroup_scope)
                manager.destroy()
                remove_state_dir(state_dir)
        except (FileNotFoundError, ContainerNotExistError):
            pass                      # removed by someone else meanwhile
        except Exception as exc:
            raise in_context(exc, container_id, "destroy") from None

    def list_broken(self):
        """{id: reason} for every state directory that cannot be loaded. A container whose
        creator still holds its lock is being created, not broken, and is left out."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return {}
        broken = {}
        for name in names:
            path = os.path.join(self.root, name)
            if name.startswith(".") and not name.startswith(_LONG_PREFIX) or not os.path.isdir(path):
                continue
            try:
                if name.startswith(_LONG_PREFIX):
                    read_state(path, name)
                else:
                    self.load(name)
            except ContainerNotExistError:
                if not _locked_by_someone(path):
                    broken[name] = "no state.json: its creation was interrupted"
            except ContainerError as exc:
                broken[name] = exc.detail
        return broken

    def list(self):
        """Ids of every container with a state directory, sorted."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        ids = []
        for name in names:
            path = os.path.join(self.root, name)
            if not os.path.isdir(path):
                continue
            if not name.startswith("."):
                ids.append(name)
            elif name.startswith(_LONG_PREFIX):
                try:
                    ids.append(read_state(path, name).id)
                except ContainerError:
                    pass     # being created or destroyed: its id is not known yet
        return sorted(ids)
