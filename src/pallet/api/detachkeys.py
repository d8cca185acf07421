"""Detach keys (`ctrl-p,ctrl-q` by default), as the docker CLI and dockerd read and match them.

Shared by the CLI (pallet.cli.commands.attach matches what is typed) and palletd's attach
routes (dockerd matches them on a Tty container's stdin, so the real docker CLI detaches too).
Standard library only: the CLI imports it.
"""

from __future__ import annotations

from pallet.errors import InvalidArgument

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(spec: str) -> bytes:
    """moby pkg/term ToBytes: `ctrl-a`..`ctrl-z`, `ctrl-@`, `ctrl-[`, `ctrl-\\`, `ctrl-]`,
    `ctrl-^`, `ctrl-_`, or single characters, comma separated."""
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if len(key) == 1:
            out.append(ord(key))
        elif key.lower().startswith("ctrl-") and len(key) == 6:
            c = key[5].lower()
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[c])
            else:
                raise InvalidArgument(f"invalid detach keys {spec!r}: unknown character {key}")
        else:
            raise InvalidArgument(f"invalid detach keys {spec!r}: want ctrl-<value> or a single character")
    return bytes(out)


class Detached(Exception):
    """The user typed the detach keys; `before` is what was typed ahead of them in the same
    chunk, still to be delivered (moby's copyEscapable writes it too)."""

    def __init__(self, before: bytes = b"") -> None:
        super().__init__("detached")
        self.before = before


class DetachMatcher:
    """Holds back typed bytes that may begin the detach sequence; raises Detached on a match."""

    def __init__(self, keys: bytes) -> None:
        self.keys, self.held = keys, b""

    def feed(self, data: bytes) -> bytes:
        if not self.keys:
            return data
        out = bytearray()
        for b in data:
            cand = self.held + bytes([b])
            if self.keys.startswith(cand):
                if cand == self.keys:
                    raise Detached(bytes(out))
                self.held = cand
            else:
                out += cand
                self.held = b""
        return bytes(out)
