"""The sync-pipe protocol between pallet-runtime and the processes it forks.

A SOCK_SEQPACKET socketpair: one JSON object per message, file descriptors riding along as
SCM_RIGHTS. Message types: go, userns, mapped, ns-ready, ns-ack (idmapped mount fds), pid, continue, hook,
hook-done, created, error.
The child side uses it between fork and execve, so it does nothing but send and receive.
"""

from __future__ import annotations

import json

from pallet.errors import PalletError

MAX_MSG = 65536


class SyncError(PalletError):
    """The other side died or broke the protocol."""


class Channel:
    def __init__(self, sock) -> None:
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        import socket  # here, not at the top: `start` and `state` never need it

        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        return cls(a), cls(b)

    def send(self, mtype: str, fds: list[int] | None = None, **fields) -> None:
        import socket

        data = json.dumps({"type": mtype, **fields}).encode()
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)

    def recv(self, expect: str | None = None) -> tuple[dict, list[int]]:
        import socket

        data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MSG, 16)
        if not data:
            raise SyncError("container setup process exited before finishing" if expect is None
                            else f"container setup process exited while runtime waited for {expect!r}")
        msg = json.loads(data)
        if msg.get("type") == "error":
            raise SyncError(msg.get("message", "unknown error in container setup"))
        if expect is not None and msg.get("type") != expect:
            raise SyncError(f"sync protocol: expected {expect!r}, got {msg.get('type')!r}")
        return msg, list(fds)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()
