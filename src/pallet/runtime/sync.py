"""The sync-pipe protocol between pallet-runtime and the processes it forks.

A SOCK_SEQPACKET socketpair: one JSON object per message (jsonio: the init uses it after
pivot_root, where no module can be imported any more), file descriptors riding along as
SCM_RIGHTS. Message types: go, userns, mapped, ns-ready, ns-ack (idmapped mount fds; this pair only
when the config has id-mapped mounts), pid, continue, hook, hook-done, created, error.
The child side uses it between fork and execve, so it does nothing but send and receive.
"""

from __future__ import annotations

import _socket  # the C module: socket.py costs ~2 ms of imports (enum conversions, selectors)
import struct

from pallet import jsonio
from pallet.errors import PalletError

MAX_MSG = 65536


def send_fds(sock, data: bytes, fds: list[int]) -> None:
    """socket.send_fds on a _socket.socket: one message with `fds` as SCM_RIGHTS (unix(7))."""
    sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))])


def recv_fds(sock, bufsize: int, maxfds: int) -> tuple[bytes, list[int]]:
    """socket.recv_fds on a _socket.socket: the message and the descriptors that rode along."""
    data, ancdata, _flags, _addr = sock.recvmsg(bufsize, _socket.CMSG_LEN(maxfds * 4))
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds.extend(struct.unpack(f"{usable // 4}i", payload[:usable]))
    return data, fds


class SyncError(PalletError):
    """The other side died or broke the protocol."""


class Channel:
    def __init__(self, sock) -> None:
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)  # close-on-exec, PEP 446
        return cls(a), cls(b)

    def send(self, mtype: str, fds: list[int] | None = None, **fields) -> None:
        data = jsonio.dumps({"type": mtype, **fields}).encode()
        if fds:
            send_fds(self.sock, data, fds)
        else:
            self.sock.sendall(data)

    def recv(self, expect: str | None = None) -> tuple[dict, list[int]]:
        data, fds = recv_fds(self.sock, MAX_MSG, 16)
        if not data:
            raise SyncError("container setup process exited before finishing" if expect is None
                            else f"container setup process exited while runtime waited for {expect!r}")
        msg = jsonio.loads(data.decode())
        if msg.get("type") == "error":
            raise SyncError(msg.get("message", "unknown error in container setup"))
        if expect is not None and msg.get("type") != expect:
            raise SyncError(f"sync protocol: expected {expect!r}, got {msg.get('type')!r}")
        return msg, fds

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()
