"""pycontainer: a Linux container runtime for Python programs."""
from .config import Config, Mount, ProcessConfig, Resources
from .container import Container
from .errors import (ConfigInvalidError, ContainerError, ContainerNotExistError,
                     ContainerNotRunningError, ContainerPausedError, ContainerSystemError,
                     IdInUseError, InvalidIdError)
from .events import Event
from .factory import Factory
from .state import RunState, StateInvalidError
from .stats import ContainerStats

__all__ = [
    "Config", "Mount", "ProcessConfig", "Resources", "Container", "Factory", "RunState",
    "ContainerStats", "Event", "ContainerError", "ConfigInvalidError", "ContainerNotExistError",
    "ContainerNotRunningError", "ContainerPausedError", "ContainerSystemError", "IdInUseError",
    "InvalidIdError", "StateInvalidError",
]
__version__ = "0.1.0"
