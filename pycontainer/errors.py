"""The exception hierarchy.

Every message a user reads names the container, the operation and the cause:
``container 'box1': start: exec: /bin/nope: No such file or directory``.
"""
import errno as _errno
import os


class ContainerError(Exception):
    """Base of every pycontainer error. ``code`` is a stable machine-readable name."""

    code = "ContainerError"

    def __init__(self, message, *, container_id=None, operation=None):
        self.container_id = container_id
        self.operation = operation
        self.detail = message
        super().__init__(_compose(container_id, operation, message))


def _compose(container_id, operation, message):
    parts = []
    if container_id is not None:
        parts.append(f"container {container_id!r}")
    if operation:
        parts.append(operation)
    parts.append(message)
    return ": ".join(parts)


class IdInUseError(ContainerError):
    code = "IdInUse"


class InvalidIdError(ContainerError, ValueError):
    code = "InvalidIdFormat"


class ContainerNotExistError(ContainerError):
    code = "ContainerNotExists"


class ContainerPausedError(ContainerError):
    code = "ContainerPaused"


class ContainerNotRunningError(ContainerError):
    """The operation needs a running init (pause/resume of a created or stopped container)."""

    code = "ContainerNotRunning"


class ContainerNotStoppedError(ContainerError):
    """The operation needs no live init (staging an init while one runs, releasing an
    init that already runs)."""

    code = "ContainerNotStopped"


class ConfigInvalidError(ContainerError, ValueError):
    """A Config or ProcessConfig field has a bad value; ``field`` and ``value`` say which."""

    code = "ConfigInvalid"

    def __init__(self, field, value, reason, *, container_id=None, operation=None):
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={value!r}: {reason}",
                         container_id=container_id, operation=operation)

    def __reduce__(self):
        return (_rebuild_config_error,
                (self.field, self.value, self.reason, self.container_id, self.operation))


class ImageError(ContainerError, ValueError):
    """An image cannot be used: a document or layer of it is malformed, does not match its
    digest, or has an entry that is refused (the message names the layer and the entry)."""

    code = "ImageInvalid"


class ContainerSystemError(ContainerError, OSError):
    """A syscall failed. ``errno`` is the kernel's; ``stage`` names the step inside the
    container's child process (``"pivot_root"``, ``"exec"`` ...) when it failed there."""

    code = "SystemError"

    def __init__(self, err, what, *, stage=None, container_id=None, operation=None):
        self.stage = stage
        self.what = what
        name = _errno.errorcode.get(err, str(err))
        cause = f"{stage}: " if stage else ""
        message = f"{cause}{what}: {os.strerror(err)} ({name})" if what else \
            f"{cause}{os.strerror(err)} ({name})"
        ContainerError.__init__(self, message, container_id=container_id, operation=operation)
        # OSError's attributes, set by hand: OSError.__init__ would rewrite args.
        self.errno = err
        self.strerror = os.strerror(err)
        self.filename = None

    def __str__(self):
        return self.args[0]

    def __reduce__(self):
        return (_rebuild_system_error,
                (self.errno, self.what, self.stage, self.container_id, self.operation))


def _rebuild_system_error(err, what, stage, container_id, operation):
    return ContainerSystemError(err, what, stage=stage, container_id=container_id,
                                operation=operation)


def _rebuild_config_error(field, value, reason, container_id, operation):
    return ConfigInvalidError(field, value, reason, container_id=container_id,
                              operation=operation)


def system_error_from(exc, what=None, *, container_id=None, operation=None):
    """Turn an OSError raised by Python (os.open, os.write ...) into ContainerSystemError."""
    if isinstance(exc, ContainerSystemError):
        if container_id is not None and exc.container_id is None:
            return ContainerSystemError(exc.errno, exc.what, stage=exc.stage,
                                        container_id=container_id, operation=operation)
        return exc
    where = what or exc.filename or ""
    return ContainerSystemError(exc.errno or _errno.EIO, str(where), container_id=container_id,
                                operation=operation)


def in_context(exc, container_id, operation):
    """The same error, its message naming the container and operation (if it did not yet)."""
    if isinstance(exc, ContainerError) and exc.container_id is not None:
        return exc
    if isinstance(exc, ContainerSystemError) or (isinstance(exc, OSError)
                                                 and not isinstance(exc, ContainerError)):
        return system_error_from(exc, container_id=container_id, operation=operation)
    if isinstance(exc, ConfigInvalidError):
        return ConfigInvalidError(exc.field, exc.value, exc.reason, container_id=container_id,
                                  operation=operation)
    if isinstance(exc, ContainerError):
        return type(exc)(exc.detail, container_id=container_id, operation=operation)
    return exc
