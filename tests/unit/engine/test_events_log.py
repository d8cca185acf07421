"""The event log (pallet.engine.events): Docker's message shape, persistence and rotation,
since/until, moby's filter rules, live subscriptions, Docker's timestamp formats."""

from __future__ import annotations

import json
import threading

import pytest

from pallet.engine.events import (
    EventLog,
    container_attributes,
    matches,
    message,
    parse_timestamp,
)
from pallet.errors import InvalidArgument

CID = "c" * 64
S = 10**9


class Clock:
    def __init__(self, start: int = 1_700_000_000 * S) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += S
        return self.now


def test_container_message_has_docker_shape_with_legacy_fields():
    attrs = container_attributes("/web", "busybox", {"app": "x"}, {"exitCode": 3})
    msg = message("container", "die", CID, attrs, now_ns=1_700_000_000_123_456_789)
    assert msg == {"status": "die", "id": CID, "from": "busybox", "Type": "container", "Action": "die",
                   "Actor": {"ID": CID, "Attributes": {"app": "x", "image": "busybox", "name": "web",
                                                      "exitCode": "3"}},
                   "scope": "local", "time": 1_700_000_000, "timeNano": 1_700_000_000_123_456_789}


def test_image_message_has_status_and_id_but_no_from_and_volume_none():
    img = message("image", "tag", "sha256:ab", {"name": "busybox:x"})
    assert img["status"] == "tag" and img["id"] == "sha256:ab" and "from" not in img
    vol = message("volume", "create", "data", {"driver": "local"})
    assert "status" not in vol and "id" not in vol and vol["Actor"]["ID"] == "data"


def test_history_survives_reopen_and_rotation_keeps_bounded(tmp_path):
    log = EventLog(str(tmp_path), max_events=3, clock=Clock())
    for i in range(8):
        log.emit("container", "start", f"{i:064d}", {"name": f"n{i}"})
    kept = [m["Actor"]["Attributes"]["name"] for m in log.history()]
    # 8 events, 3 per file: the current file has n6 n7, the rotated one n3 n4 n5.
    assert kept == ["n3", "n4", "n5", "n6", "n7"]
    log.close()
    again = EventLog(str(tmp_path), max_events=3, clock=Clock())
    assert [m["Actor"]["Attributes"]["name"] for m in again.history()] == kept
    first = (tmp_path / "events.jsonl").read_text().splitlines()[0]
    assert json.loads(first) == {"pallet-events": 1}
    again.close()


def test_torn_last_line_is_skipped(tmp_path):
    log = EventLog(str(tmp_path), clock=Clock())
    log.emit("container", "create", CID)
    log.close()
    with open(tmp_path / "events.jsonl", "a") as f:
        f.write('{"Type": "contai')
    again = EventLog(str(tmp_path), clock=Clock())
    assert [m["Action"] for m in again.history()] == ["create"]
    again.emit("container", "start", CID)  # the log goes on after the torn line
    again.close()
    assert [m["Action"] for m in EventLog(str(tmp_path)).history()] == ["create", "start"]


def test_since_until_are_inclusive_and_time_is_monotonic(tmp_path):
    clock = Clock()
    log = EventLog(str(tmp_path), clock=lambda: 5 * S)  # a clock that stands still
    a, b, c = (log.emit("container", x, CID) for x in ("create", "start", "die"))
    assert a["timeNano"] < b["timeNano"] < c["timeNano"]
    assert [m["Action"] for m in log.history(since_ns=b["timeNano"])] == ["start", "die"]
    assert [m["Action"] for m in log.history(until_ns=b["timeNano"])] == ["create", "start"]
    assert clock() > 0


@pytest.mark.parametrize(("filters", "expected"), [
    ({"type": ["image"]}, ["tag"]),
    ({"event": ["die"]}, ["die"]),
    ({"event": ["health_status"]}, ["health_status: healthy"]),  # prefix match for these three
    ({"event": ["health_status: healthy"]}, ["health_status: healthy"]),
    ({"container": ["web"]}, ["die", "health_status: healthy"]),  # name
    ({"container": ["dddd"]}, ["start"]),  # id prefix
    ({"image": ["busybox"]}, ["die", "health_status: healthy", "tag"]),  # tag stripped
    ({"image": ["busybox:1.36"]}, ["tag"]),
    ({"label": ["app=x"]}, ["die"]),
    ({"label": ["app"]}, ["die", "health_status: healthy"]),
    ({"type": ["container"], "event": ["start", "die"]}, ["die", "start"]),
    ({"volume": ["data"]}, ["create"]),
])
def test_filters_follow_moby(tmp_path, filters, expected):
    log = EventLog(str(tmp_path), clock=Clock())
    log.emit("container", "die", CID, container_attributes("web", "busybox", {"app": "x"}))
    log.emit("container", "health_status: healthy", CID, container_attributes("web", "busybox", {"app": "y"}))
    log.emit("container", "start", "d" * 64, container_attributes("db", "alpine", {}))
    log.emit("image", "tag", "sha256:" + "e" * 64, {"name": "busybox:1.36"})
    log.emit("volume", "create", "data", {"driver": "local"})
    assert sorted(m["Action"] for m in log.history(filters=filters)) == sorted(expected)


def test_bad_filter_key_and_type_are_refused(tmp_path):
    log = EventLog(str(tmp_path))
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        log.history(filters={"colour": ["red"]})
    with pytest.raises(InvalidArgument, match="type=boat"):
        log.subscribe({"type": ["boat"]})


def test_subscription_gets_history_then_live_without_gaps(tmp_path):
    log = EventLog(str(tmp_path), clock=Clock())
    first = log.emit("container", "create", CID)
    past, sub = log.subscribe({"event": ["start"]}, since_ns=first["timeNano"])
    assert past == []  # "create" does not pass the filter
    woken = threading.Event()
    sub.on_event = woken.set
    t = threading.Thread(target=lambda: [log.emit("container", a, CID) for a in ("start", "die", "start")])
    t.start()
    got = [sub.get(5), sub.get(5)]
    t.join()
    assert [m["Action"] for m in got if m] == ["start", "start"] and woken.is_set()
    sub.close()
    assert sub.get(0.01) is None
    log.emit("container", "start", CID)  # a closed subscription is no longer fed
    assert sub.get_nowait() is None


def test_a_stuck_subscriber_is_cut_off(tmp_path):
    log = EventLog(str(tmp_path))
    _, sub = log.subscribe()
    sub.limit = 2
    for _ in range(3):
        log.emit("container", "start", CID)
    assert sub.overflowed and sub.closed


def test_parse_timestamp_docker_formats():
    now = 1_700_000_000 * S
    assert parse_timestamp("1700000000", now) == 1_700_000_000 * S
    assert parse_timestamp("1700000000.5", now) == 1_700_000_000 * S + S // 2
    assert parse_timestamp("1700000000.000000001", now) == 1_700_000_000 * S + 1
    assert parse_timestamp("10m", now) == now - 600 * S
    assert parse_timestamp("1h30m", now) == now - 5400 * S
    assert parse_timestamp("2023-11-14T22:13:20Z", now) == 1_700_000_000 * S
    assert parse_timestamp("2023-11-14T23:13:20+01:00", now) == 1_700_000_000 * S
    assert parse_timestamp("2023-11-14T22:13:20.25Z", now) == 1_700_000_000 * S + S // 4
    assert parse_timestamp("2023-11-14", now) == (1_700_000_000 - 80000) * S
    with pytest.raises(InvalidArgument):
        parse_timestamp("yesterday", now)


def test_matches_with_no_filters_passes_everything():
    assert matches(message("network", "connect", "n1", {"container": CID}), {})


def test_volume_store_emits_create_and_destroy(tmp_path):
    from pallet.engine.events import open_log
    from pallet.engine.volumes import VolumeStore

    store = VolumeStore(str(tmp_path))
    store.create("data")
    store.create("data")  # exists already: no second event
    store.remove("data")
    got = [(m["Type"], m["Action"], m["Actor"]["ID"], m["Actor"]["Attributes"])
           for m in open_log(str(tmp_path)).history()]
    assert got == [("volume", "create", "data", {"driver": "local"}),
                   ("volume", "destroy", "data", {"driver": "local"})]
