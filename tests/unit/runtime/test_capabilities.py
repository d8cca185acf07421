"""Unit tests for pallet.runtime.capabilities: tables, validation, and the recorded apply sequence."""

from __future__ import annotations

import errno

import pytest

from pallet.errors import InvalidArgument
from pallet.runtime import capabilities as C
from pallet.syscalls.recording import Call, RecordingSyscalls

ALL = (1 << 41) - 1
# Docker's default set as a mask: what `grep CapEff /proc/<pid>/status` shows in a docker run.
DOCKER_MASK = 0xA80425FB


class AmbientRecorder(RecordingSyscalls):
    """Also records prctl's third argument (the capability of PR_CAP_AMBIENT_RAISE)."""

    def __init__(self, refuse_raise: set[int] | None = None) -> None:
        super().__init__()
        self.refuse_raise = refuse_raise or set()

    def prctl(self, option, arg2=0, arg3=0, arg4=0, arg5=0) -> int:
        self._rec("prctl", option=option, arg2=arg2, arg3=arg3)
        if option == C.PR_CAP_AMBIENT and arg2 == C.PR_CAP_AMBIENT_RAISE and arg3 in self.refuse_raise:
            raise OSError(errno.EPERM, "prctl PR_CAP_AMBIENT_RAISE: [Errno 1] Operation not permitted")
        return 0


def test_name_table_matches_capability_h():
    assert C.CAPS["CAP_CHOWN"] == 0
    assert C.CAPS["CAP_SYS_ADMIN"] == 21
    assert C.CAPS["CAP_SETFCAP"] == 31
    assert C.CAPS["CAP_AUDIT_READ"] == 37
    assert C.CAPS["CAP_CHECKPOINT_RESTORE"] == 40
    assert C.CAP_LAST_KNOWN == 40
    assert len(C.CAPS) == 41
    assert all(C.name(C.number(n)) == n for n in C.CAPS)
    assert C.name(63) == "CAP_63"


def test_docker_default_caps_mask():
    assert len(C.DOCKER_DEFAULT_CAPS) == 14
    assert C.mask(C.DOCKER_DEFAULT_CAPS) == DOCKER_MASK
    assert C.names_of(DOCKER_MASK) == sorted(C.DOCKER_DEFAULT_CAPS, key=C.number)


def test_mask_drops_caps_above_last_cap():
    names = ["CAP_CHOWN", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]
    assert C.mask(names, last=40) == 1 | 1 << 39 | 1 << 40
    assert C.mask(names, last=37) == 1


def test_last_cap_reads_proc(tmp_path):
    f = tmp_path / "cap_last_cap"
    f.write_text("38\n")
    assert C.last_cap(str(f)) == 38
    assert C.last_cap(str(tmp_path / "missing")) == C.CAP_LAST_KNOWN


@pytest.mark.parametrize(
    ("caps", "message"),
    [
        ({"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_FOO"]},
         "process.capabilities.bounding[2]: unknown capability 'CAP_FOO'"),
        ({"ambient": ["chown"]}, "process.capabilities.ambient[0]: unknown capability 'chown'"),
        ({"effective": "CAP_CHOWN"}, "process.capabilities.effective: expected an array of strings"),
        ({"permitted": [21]}, "process.capabilities.permitted[0]: expected a string, got int"),
        ({"bounds": []}, "process.capabilities.bounds: unknown capability set"),
        (["CAP_CHOWN"], "process.capabilities: expected an object, got list"),
    ],
)
def test_validate_names_the_field(caps, message):
    with pytest.raises(InvalidArgument) as exc:
        C.validate(caps)
    assert str(exc.value).startswith(message)


def test_validate_accepts_full_and_empty_sets():
    C.validate({k: list(C.CAPS) for k in C.SETS})
    C.validate({})
    C.validate({"bounding": None})


def test_drop_bounding_drops_the_rest_then_keeps_caps():
    rec = RecordingSyscalls()
    C.drop_bounding({"bounding": list(C.DOCKER_DEFAULT_CAPS)}, rec, last=40)
    dropped = [n for n in range(41) if not DOCKER_MASK >> n & 1]
    assert rec.calls == [Call("prctl", option=C.PR_CAPBSET_DROP, arg2=n, arg3=0) for n in dropped] + [
        Call("prctl", option=C.PR_SET_KEEPCAPS, arg2=1, arg3=0)
    ]


def test_drop_bounding_stops_at_last_cap_and_ignores_unknown_to_kernel():
    rec = RecordingSyscalls()
    C.drop_bounding({"bounding": ["CAP_CHOWN", "CAP_CHECKPOINT_RESTORE"]}, rec, last=37)
    assert [c.args["arg2"] for c in rec.calls[:-1]] == list(range(1, 38))


def test_drop_bounding_without_bounding_drops_everything():
    rec = RecordingSyscalls()
    C.drop_bounding({}, rec, last=40)
    assert len(rec.calls) == 42


def test_apply_after_user_switch_sequence():
    rec = AmbientRecorder()
    rec.caps = (0, ALL, 0)
    caps = {
        "bounding": list(C.DOCKER_DEFAULT_CAPS),
        "effective": list(C.DOCKER_DEFAULT_CAPS),
        "permitted": list(C.DOCKER_DEFAULT_CAPS),
        "inheritable": ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
        "ambient": ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
    }
    warnings = C.apply_after_user_switch(caps, rec, last=40)
    assert warnings == []
    inh = 1 << 10 | 1 << 0
    assert rec.calls == [
        Call("prctl", option=C.PR_SET_KEEPCAPS, arg2=0, arg3=0),
        Call("capget"),
        Call("capset", effective=DOCKER_MASK, permitted=DOCKER_MASK, inheritable=inh),
        Call("prctl", option=C.PR_CAP_AMBIENT, arg2=C.PR_CAP_AMBIENT_CLEAR_ALL, arg3=0),
        Call("prctl", option=C.PR_CAP_AMBIENT, arg2=C.PR_CAP_AMBIENT_RAISE, arg3=0),
        Call("prctl", option=C.PR_CAP_AMBIENT, arg2=C.PR_CAP_AMBIENT_RAISE, arg3=10),
    ]


def test_apply_with_the_lead_recorder():
    rec = RecordingSyscalls()
    rec.caps = (ALL, ALL, 0)
    caps = {"permitted": ["CAP_KILL"], "effective": ["CAP_KILL"]}
    assert C.apply_after_user_switch(caps, rec, last=40) == []
    assert [c.call for c in rec.calls] == ["prctl", "capget", "capset", "prctl"]
    assert rec.caps == (1 << 5, 1 << 5, 0)


def test_caps_not_held_are_warned_not_fatal():
    rec = AmbientRecorder()
    rec.caps = (0, DOCKER_MASK, 0)  # the runtime itself runs without CAP_SYS_ADMIN
    caps = {
        "bounding": ["CAP_SYS_ADMIN", "CAP_CHOWN"],
        "permitted": ["CAP_SYS_ADMIN", "CAP_CHOWN"],
        "effective": ["CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_KILL"],
        "inheritable": ["CAP_CHOWN", "CAP_KILL"],
        "ambient": ["CAP_CHOWN", "CAP_KILL"],
    }
    warnings = C.apply_after_user_switch(caps, rec, last=40)
    assert Call("capset", effective=1, permitted=1, inheritable=1) in rec.calls
    assert warnings == [
        "process.capabilities.permitted: CAP_SYS_ADMIN not granted: not in the runtime's permitted set",
        "process.capabilities.effective: CAP_KILL not granted: not in the permitted set",
        "process.capabilities.effective: CAP_SYS_ADMIN not granted: not in the permitted set",
        "process.capabilities.inheritable: CAP_KILL not granted: not in the bounding and permitted sets",
        "process.capabilities.ambient: CAP_KILL not granted: not both permitted and inheritable",
    ]


def test_ambient_raise_refused_by_kernel_is_a_warning():
    rec = AmbientRecorder(refuse_raise={0})
    rec.caps = (0, ALL, 0)
    caps = {k: ["CAP_CHOWN"] for k in C.SETS}
    warnings = C.apply_after_user_switch(caps, rec, last=40)
    assert len(warnings) == 1
    assert warnings[0].startswith("process.capabilities.ambient: CAP_CHOWN not granted: ")
