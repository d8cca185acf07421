"""Restart policies (pallet.engine.restart): validation as dockerd, the back-off of moby's
restartmanager (100 ms doubling to 1 min, reset after a 10 s run), and the decision table."""

from __future__ import annotations

import pytest

from pallet.engine.restart import Policy, next_timeout, should_restart, validate
from pallet.errors import InvalidArgument


def test_backoff_doubles_caps_and_resets():
    t, seen = 0.0, []
    for _ in range(12):
        t = next_timeout(t, ran_for=0.5)
        seen.append(t)
    assert seen[:5] == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert max(seen) == 60.0 and seen[-1] == 60.0
    assert next_timeout(60.0, ran_for=10.0) == 0.1  # ran 10 s: back to the start
    assert next_timeout(0.4, ran_for=9.9) == 0.8


@pytest.mark.parametrize(("policy", "code", "manual", "count", "expected"), [
    (Policy("no"), 1, False, 0, False),
    (Policy("always"), 0, False, 0, True),
    (Policy("always"), 0, True, 0, True),  # the manual stop is handled by cancelling, not here
    (Policy("unless-stopped"), 0, False, 5, True),
    (Policy("unless-stopped"), 1, True, 0, False),
    (Policy("on-failure"), 0, False, 0, False),
    (Policy("on-failure"), 2, False, 100, True),  # no maximum
    (Policy("on-failure", 3), 2, False, 2, True),
    (Policy("on-failure", 3), 2, False, 3, False),
])
def test_should_restart_table(policy, code, manual, count, expected):
    assert should_restart(policy, code, manual, count) is expected


def test_validate_as_dockerd():
    assert validate(None) == {"Name": "no", "MaximumRetryCount": 0}
    assert validate({"Name": ""}) == {"Name": "no", "MaximumRetryCount": 0}
    assert validate({"Name": "on-failure", "MaximumRetryCount": 5}) == {"Name": "on-failure",
                                                                       "MaximumRetryCount": 5}
    with pytest.raises(InvalidArgument, match="unknown policy 'sometimes'"):
        validate({"Name": "sometimes"})
    with pytest.raises(InvalidArgument, match="can only be used with 'on-failure'"):
        validate({"Name": "always", "MaximumRetryCount": 2})
    with pytest.raises(InvalidArgument, match="cannot be negative"):
        validate({"Name": "on-failure", "MaximumRetryCount": -1})
    policy = Policy.of({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}})
    assert policy == Policy("on-failure", 2)
    assert Policy.of({}) == Policy("no", 0)


def test_bundle_accepts_policies_and_refuses_autoremove_with_one():
    from pallet.engine.bundle import resources_update, validate_create

    _, hc = validate_create({"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "always"}}})
    assert hc["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    with pytest.raises(InvalidArgument, match="AutoRemove"):
        validate_create({"Image": "busybox", "HostConfig": {"AutoRemove": True,
                                                            "RestartPolicy": {"Name": "always"}}})
    with pytest.raises(InvalidArgument):
        validate_create({"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "bogus"}}})
    _, stored = resources_update({"RestartPolicy": {"Name": "unless-stopped"}})
    assert stored["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    _, stored = resources_update({"RestartPolicy": {"Name": "", "MaximumRetryCount": 0}})
    assert "RestartPolicy" not in stored  # the docker CLI sends an empty policy: keep the old one
