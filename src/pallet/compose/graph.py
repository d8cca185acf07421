"""The services' dependency graph (`depends_on`): start order, stop order, cycles.

Order is topological and otherwise follows the file (a stable Kahn's algorithm), so `up`
starts dependencies first and `down` stops dependents first. A cycle is an error that names it:
`dependency cycle: web -> api -> web`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pallet.errors import InvalidArgument


def _deps(services: dict[str, dict[str, Any]], name: str) -> list[str]:
    return [d for d in (services[name].get("depends_on") or {}) if d in services]


def check_cycles(services: dict[str, dict[str, Any]]) -> None:
    """InvalidArgument naming the first cycle found (depth-first, in file order)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dep in _deps(services, name):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep):], dep]
                raise InvalidArgument(f"dependency cycle: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep)
        path.pop()
        state[name] = 2

    for name in services:
        if name not in state:
            visit(name)


def start_order(services: dict[str, dict[str, Any]], selected: Iterable[str] | None = None) -> list[str]:
    """`selected` (default: all) and what they depend on, dependencies first."""
    check_cycles(services)
    wanted = set(services) if selected is None else closure(services, selected)
    order: list[str] = []
    done: set[str] = set()
    remaining = [n for n in services if n in wanted]
    while remaining:
        ready = [n for n in remaining if all(d in done for d in _deps(services, n) if d in wanted)]
        if not ready:  # unreachable after check_cycles; kept so a bug cannot loop forever
            raise InvalidArgument(f"dependency cycle among {', '.join(remaining)}")
        for n in ready:
            order.append(n)
            done.add(n)
        remaining = [n for n in remaining if n not in done]
    return order


def stop_order(services: dict[str, dict[str, Any]], selected: Iterable[str] | None = None) -> list[str]:
    """Dependents first: the reverse of the start order."""
    return list(reversed(start_order(services, selected)))


def closure(services: dict[str, dict[str, Any]], names: Iterable[str]) -> set[str]:
    """`names` with everything they depend on, transitively."""
    out: set[str] = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        if n in out or n not in services:
            continue
        out.add(n)
        todo.extend(_deps(services, n))
    return out


def dependents(services: dict[str, dict[str, Any]], names: Iterable[str]) -> set[str]:
    """`names` with every service that depends on them, transitively (stop/restart order)."""
    out = set(names)
    changed = True
    while changed:
        changed = False
        for n in services:
            if n not in out and any(d in out for d in _deps(services, n)):
                out.add(n)
                changed = True
    return out
