"""The container state machine and Docker's name rules."""

from __future__ import annotations

import pytest

from pallet.engine.names import random_name, validate_name
from pallet.engine.state import ContainerState, Status, check_transition
from pallet.errors import Conflict, InvalidArgument

S = Status


@pytest.mark.parametrize("status,start,stop,pause,unpause,exec_,remove,force", [
    (S.CREATED, True, False, False, False, False, True, True),
    (S.RUNNING, False, True, True, False, True, False, True),
    (S.PAUSED, False, True, False, True, False, False, True),
    (S.RESTARTING, False, True, False, False, False, False, True),
    (S.EXITED, True, False, False, False, False, True, True),
    (S.DEAD, False, False, False, False, False, True, True),
    (S.REMOVING, False, False, False, False, False, False, False),
])
def test_can_table(status, start, stop, pause, unpause, exec_, remove, force):
    assert (status.can_start(), status.can_stop(), status.can_pause(), status.can_unpause(),
            status.can_exec(), status.can_remove(False), status.can_remove(True)) == (
        start, stop, pause, unpause, exec_, remove, force)


@pytest.mark.parametrize("old,new,ok", [
    (S.CREATED, S.RUNNING, True), (S.RUNNING, S.PAUSED, True), (S.PAUSED, S.RUNNING, True),
    (S.RUNNING, S.EXITED, True), (S.EXITED, S.RUNNING, True), (S.CREATED, S.PAUSED, False),
    (S.EXITED, S.PAUSED, False), (S.REMOVING, S.RUNNING, False), (S.RUNNING, S.CREATED, False),
    (S.EXITED, S.REMOVING, True), (S.RUNNING, S.DEAD, True), (S.DEAD, S.DEAD, False),
])
def test_transitions(old, new, ok):
    if ok:
        check_transition(old, new)
    else:
        with pytest.raises(Conflict):
            check_transition(old, new)


def test_docker_state_json_and_round_trip():
    st = ContainerState()
    st.set(S.RUNNING)
    st.pid, st.started_at = 42, "2024-01-01T00:00:00.000000001Z"
    st.set(S.PAUSED)
    d = st.to_docker()
    assert d == {"Status": "paused", "Running": True, "Paused": True, "Restarting": False, "OOMKilled": False,
                 "Dead": False, "Pid": 42, "ExitCode": 0, "Error": "", "StartedAt": st.started_at,
                 "FinishedAt": "0001-01-01T00:00:00Z"}
    assert ContainerState.from_dict(st.to_dict()) == st
    with pytest.raises(Conflict):
        st.set(S.PAUSED)


@pytest.mark.parametrize("name,ok", [
    ("web", True), ("/web", True), ("a1", True), ("a.b-c_d", True), ("a", False), ("-ab", False),
    ("_ab", False), ("a b", False), ("a/b", False), ("", False), ("ab:c", False),
])
def test_name_rules(name, ok):
    if ok:
        assert validate_name(name) == name.lstrip("/")
    else:
        with pytest.raises(InvalidArgument):
            validate_name(name)


def test_random_names_are_valid_and_avoid_taken():
    taken = set()
    for _ in range(200):
        n = random_name(taken)
        assert validate_name(n) == n and n not in taken
        taken.add(n)


def test_prune_takes_what_is_not_running():
    assert {s for s in Status if s.can_prune()} == {Status.CREATED, Status.EXITED, Status.DEAD}
    assert all(s.can_remove(False) for s in Status if s.can_prune())


def test_prune_until_forms():
    from pallet.engine.containers import _prune_until

    now = 1_700_000_000.0
    assert _prune_until("10m", now) == now - 600
    assert _prune_until("1h30m", now) == now - 5400
    assert _prune_until("1700000000.5", now) == 1700000000.5
    assert _prune_until("2023-11-14T22:13:20Z", now) == 1700000000.0
    with pytest.raises(InvalidArgument):
        _prune_until("yesterday", now)
