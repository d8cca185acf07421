"""Healthchecks (pallet.engine.health): merging the image's check with the container's, the probe
command, dockerd's status rules (streak, retries, start period), validation, CLI flags."""

from __future__ import annotations

import argparse

import pytest

from pallet.engine.health import (
    HEALTHY,
    STARTING,
    UNHEALTHY,
    HealthState,
    _go_duration,
    merged,
    probe_argv,
    validate,
)
from pallet.errors import InvalidArgument

S = 10**9


def _result(code: int) -> dict:
    return {"Start": "s", "End": "e", "ExitCode": code, "Output": ""}


def test_merge_container_over_image():
    image = {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 30 * S, "Retries": 5}
    assert merged(image, None) == image
    assert merged(image, {"Test": ["CMD", "true"], "Interval": 0, "Timeout": 2 * S}) == {
        "Test": ["CMD", "true"], "Interval": 30 * S, "Retries": 5, "Timeout": 2 * S}
    assert merged(image, {"Test": [], "Interval": S})["Test"] == ["CMD-SHELL", "curl -f localhost"]
    assert merged(image, {"Test": ["NONE"]}) is None
    assert merged(None, None) is None


def test_probe_argv():
    assert probe_argv(["CMD-SHELL", "exit 1"]) == ["/bin/sh", "-c", "exit 1"]
    assert probe_argv(["CMD", "cat", "/x"]) == ["cat", "/x"]


def test_status_rules_as_dockerd():
    h = HealthState()
    assert h.status == STARTING
    assert h.record(_result(1), retries=2, in_start_period=True) is None  # not counted yet
    assert h.failing_streak == 0
    assert h.record(_result(1), retries=2, in_start_period=False) is None
    assert h.record(_result(1), retries=2, in_start_period=False) == UNHEALTHY
    assert h.failing_streak == 2
    assert h.record(_result(0), retries=2, in_start_period=False) == HEALTHY
    assert h.failing_streak == 0
    for _ in range(6):
        h.record(_result(1), retries=3, in_start_period=True)  # healthy: the start period no longer spares
    assert h.status == UNHEALTHY and len(h.log) == 5  # the last 5 results
    assert h.to_docker()["FailingStreak"] == 6


def test_validate():
    validate(None)
    validate({"Test": ["CMD", "true"], "Interval": S, "Retries": 1})
    with pytest.raises(InvalidArgument, match="unknown type"):
        validate({"Test": ["SHELL", "x"]})
    with pytest.raises(InvalidArgument, match="at least 1ms"):
        validate({"Test": ["CMD", "true"], "Interval": 10})
    with pytest.raises(InvalidArgument, match="Retries"):
        validate({"Test": ["CMD", "true"], "Retries": -1})


def test_go_duration_text():
    assert _go_duration(30) == "30s" and _go_duration(0.5) == "500ms"
    assert _go_duration(1.5) == "1.5s" and _go_duration(120) == "2m0s"


def _flags(**kw) -> argparse.Namespace:
    base = {"health_cmd": None, "health_interval": None, "health_timeout": None, "health_retries": None,
            "health_start_period": None, "health_start_interval": None, "no_healthcheck": False}
    base.update(kw)
    return argparse.Namespace(**base)


def test_cli_health_flags_as_the_docker_cli():
    from pallet.cli.commands.run import healthcheck

    assert healthcheck(_flags()) is None
    assert healthcheck(_flags(no_healthcheck=True)) == {"Test": ["NONE"]}
    assert healthcheck(_flags(health_cmd="true", health_interval="1m30s", health_timeout="500ms",
                              health_retries=2)) == {
        "Test": ["CMD-SHELL", "true"], "Interval": 90 * S, "Timeout": S // 2, "StartPeriod": 0,
        "StartInterval": 0, "Retries": 2}
    with pytest.raises(InvalidArgument, match="conflicts"):
        healthcheck(_flags(no_healthcheck=True, health_cmd="true"))
    with pytest.raises(InvalidArgument, match="invalid duration"):
        healthcheck(_flags(health_interval="soon"))
