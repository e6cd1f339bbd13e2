"""RunState: what the kernel says a container is doing (pycontainer.state names it; kept
apart because importing enum costs the command line's short commands more than their
work)."""
import enum

__all__ = ["RunState"]


class RunState(enum.Enum):
    CREATED = "created"     # no process yet
    RUNNING = "running"
    PAUSING = "pausing"     # freeze requested, not yet reported done by the kernel
    PAUSED = "paused"
    STOPPED = "stopped"     # its init has exited

    def __str__(self):
        return self.value
