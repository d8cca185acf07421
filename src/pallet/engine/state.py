"""The container state machine: one enum, its `can_*` questions and the allowed transitions.

A container moves through Docker's statuses (api/types/container/state.go):

    created --start--> running --pause--> paused --unpause--> running
    running/paused --exit--> exited --start--> running
    running --(restart policy)--> restarting --> running | exited
    any but removing --remove--> removing --> (gone)      any --failure--> dead

The engine asks these questions under the container's lock (STYLE.md §4); `check_transition` is
the one place a change of status is validated.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pallet.errors import Conflict

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, what Docker shows for "never"


class Status(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    EXITED = "exited"
    DEAD = "dead"
    REMOVING = "removing"

    def can_start(self) -> bool:
        return self in (Status.CREATED, Status.EXITED)

    def can_stop(self) -> bool:
        return self in (Status.RUNNING, Status.PAUSED, Status.RESTARTING)

    def can_kill(self) -> bool:
        return self in (Status.RUNNING, Status.PAUSED)

    def can_pause(self) -> bool:
        return self is Status.RUNNING

    def can_unpause(self) -> bool:
        return self is Status.PAUSED

    def can_exec(self) -> bool:
        return self is Status.RUNNING

    def can_update(self) -> bool:
        return self is not Status.REMOVING and self is not Status.DEAD

    def can_remove(self, force: bool) -> bool:
        if self is Status.REMOVING:
            return False
        return force or self in (Status.CREATED, Status.EXITED, Status.DEAD)

    def can_prune(self) -> bool:
        """What `prune` removes: a container that is not running (Docker: created, exited, dead)."""
        return self in (Status.CREATED, Status.EXITED, Status.DEAD)

    @property
    def is_active(self) -> bool:
        """A monitor (and a container process) exists for this status."""
        return self in (Status.RUNNING, Status.PAUSED, Status.RESTARTING)


# new status -> the statuses it may be entered from
_TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.CREATED: frozenset(),
    Status.RUNNING: frozenset({Status.CREATED, Status.EXITED, Status.PAUSED, Status.RESTARTING}),
    Status.PAUSED: frozenset({Status.RUNNING}),
    Status.RESTARTING: frozenset({Status.RUNNING, Status.EXITED}),
    Status.EXITED: frozenset({Status.RUNNING, Status.PAUSED, Status.RESTARTING, Status.CREATED}),
    Status.DEAD: frozenset(set(Status) - {Status.DEAD}),
    Status.REMOVING: frozenset({Status.CREATED, Status.EXITED, Status.DEAD, Status.RUNNING, Status.PAUSED}),
}


def check_transition(old: Status, new: Status) -> None:
    """Conflict unless a container may go from `old` to `new`."""
    if old not in _TRANSITIONS[new]:
        raise Conflict(f"container is {old.value}: it cannot become {new.value}")


@dataclass
class ContainerState:
    """What Docker's ContainerState holds (v1.50.yaml), less Health (its own issue)."""

    status: Status = Status.CREATED
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME

    def set(self, new: Status) -> None:
        check_transition(self.status, new)
        self.status = new

    def to_docker(self) -> dict[str, Any]:
        s = self.status
        return {
            "Status": s.value,
            "Running": s in (Status.RUNNING, Status.PAUSED, Status.RESTARTING),
            "Paused": s is Status.PAUSED,
            "Restarting": s is Status.RESTARTING,
            "OOMKilled": self.oom_killed,
            "Dead": s is Status.DEAD,
            "Pid": self.pid if s.is_active else 0,
            "ExitCode": self.exit_code,
            "Error": self.error,
            "StartedAt": self.started_at,
            "FinishedAt": self.finished_at,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "pid": self.pid, "exit_code": self.exit_code,
                "error": self.error, "oom_killed": self.oom_killed, "started_at": self.started_at,
                "finished_at": self.finished_at}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContainerState:
        return cls(status=Status(d.get("status", "created")), pid=int(d.get("pid", 0)),
                   exit_code=int(d.get("exit_code", 0)), error=str(d.get("error", "")),
                   oom_killed=bool(d.get("oom_killed", False)),
                   started_at=d.get("started_at", ZERO_TIME), finished_at=d.get("finished_at", ZERO_TIME))
