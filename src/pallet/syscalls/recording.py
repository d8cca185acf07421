"""A recording fake of pallet.syscalls.linux.Syscalls for unit tests (youki's TestHelperSyscall)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Call:
    call: str
    args: dict[str, Any] = field(default_factory=dict)

    def __init__(self, call: str, **args: Any) -> None:
        object.__setattr__(self, "call", call)
        object.__setattr__(self, "args", args)


class RecordingSyscalls:
    """Records every call instead of making it. `fail` maps a call name to an OSError to raise."""

    def __init__(self, fail: dict[str, OSError] | None = None) -> None:
        self.calls: list[Call] = []
        self.fail = fail or {}
        self.caps = (0, 0, 0)
        self._next_fd = 100

    def _rec(self, call: str, **args: Any) -> None:
        self.calls.append(Call(call, **args))
        if call in self.fail:
            raise self.fail[call]

    def mount(self, source, target, fstype=None, flags=0, data=None) -> None:
        self._rec("mount", source=source, target=target, fstype=fstype, flags=flags, data=data)

    def umount2(self, target, flags=0) -> None:
        self._rec("umount2", target=target, flags=flags)

    def pivot_root(self, new_root, put_old) -> None:
        self._rec("pivot_root", new_root=new_root, put_old=put_old)

    def unshare(self, flags) -> None:
        self._rec("unshare", flags=flags)

    def setns(self, fd, nstype=0, path="") -> None:
        self._rec("setns", nstype=nstype, path=path)

    def prctl(self, option, arg2=0, arg3=0, arg4=0, arg5=0) -> int:
        self._rec("prctl", option=option, arg2=arg2, arg3=arg3)
        return 0

    def setdomainname(self, name) -> None:
        self._rec("setdomainname", name=name)

    def capget(self):
        self._rec("capget")
        return self.caps

    def capset(self, effective, permitted, inheritable) -> None:
        self._rec("capset", effective=effective, permitted=permitted, inheritable=inheritable)
        self.caps = (effective, permitted, inheritable)

    def open_tree(self, path, flags, dirfd=-100) -> int:
        self._rec("open_tree", path=path, flags=flags)
        self._next_fd += 1
        return self._next_fd

    def mount_setattr_idmap(self, tree_fd, userns_fd, recursive) -> None:
        self._rec("mount_setattr_idmap", recursive=recursive)

    def move_mount(self, from_fd, target) -> None:
        self._rec("move_mount", target=target)
