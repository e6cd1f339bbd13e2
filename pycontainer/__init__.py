"""pycontainer: a Linux container runtime for Python programs."""
from .config import Config, Mount, Network, ProcessConfig, Resources
from .container import Container
from .errors import (ConfigInvalidError, ContainerError, ContainerNotExistError,
                     ContainerNotRunningError, ContainerNotStoppedError, ContainerPausedError,
                     ContainerSystemError, IdInUseError, InvalidIdError)
from .events import Event
from .factory import Factory
from .process import StartedProcess
from .state import RunState, StateInvalidError
from .stats import ContainerStats

__all__ = [
    "Config", "Mount", "Network", "ProcessConfig", "Resources", "Container", "StartedProcess",
    "Factory", "RunState", "ContainerStats", "Event", "ContainerError", "ConfigInvalidError",
    "ContainerNotExistError", "ContainerNotRunningError", "ContainerNotStoppedError",
    "ContainerPausedError", "ContainerSystemError", "IdInUseError", "InvalidIdError",
    "StateInvalidError",
]
__version__ = "0.1.0"
