"""Merging several Compose files (`-f a.yaml -f b.yaml`), after the Compose Specification's
"Merge and override" rules, applied to normalised services (loader.normalize_service):

- mappings merge key by key, the later file's scalars win;
- sequences are appended, except the "unique resources": `ports` (by host ip, published port,
  target and protocol), `volumes` (by target), `devices` (by container path), and the
  shell-command attributes `command`, `entrypoint`, `healthcheck.test`, which the later file
  replaces; `environment`, `labels`, `sysctls`, `extra_hosts`, `ulimits` are mappings once
  normalised and merge as such; `dns`, `cap_add`, `cap_drop`, `expose`, `env_file`,
  `profiles`, `tmpfs` append without duplicates;
- the YAML tags `!reset` (drop the value inherited from earlier files) and `!override`
  (replace it whole instead of merging) apply to any attribute.
"""

from __future__ import annotations

from typing import Any


class Reset:
    """A value tagged `!reset`: removes the attribute inherited from earlier files."""

    def __repr__(self) -> str:
        return "!reset"


class Override:
    """A value tagged `!override`: replaces the inherited attribute instead of merging."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"!override {self.value!r}"


_REPLACE = frozenset({"command", "entrypoint"})
_UNIQUE_APPEND = frozenset({"dns", "cap_add", "cap_drop", "expose", "env_file", "profiles", "tmpfs",
                            "dns_search"})


def _port_key(p: dict[str, Any]) -> tuple[Any, ...]:
    return (p.get("host_ip"), p.get("published"), p.get("target"), p.get("protocol", "tcp"))


_KEYED = {
    "ports": _port_key,
    "volumes": lambda v: v.get("target"),
    "devices": lambda d: d.get("target"),
}


def merge_service(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged onto `base` (both normalised); neither is modified."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Reset):
            out.pop(key, None)
            continue
        if isinstance(value, Override):
            out[key] = strip_tags(value.value)
            continue
        if key not in out or key in _REPLACE:
            out[key] = strip_tags(value)
        elif key in _KEYED and isinstance(value, list):
            keyf = _KEYED[key]
            merged = {keyf(v): v for v in out[key]}
            for v in value:
                merged[keyf(v)] = v
            out[key] = list(merged.values())
        elif key in _UNIQUE_APPEND and isinstance(value, list):
            out[key] = list(dict.fromkeys([*out[key], *value]))
        elif key == "healthcheck" and isinstance(value, dict):
            out[key] = {**out[key], **strip_tags(value)}  # test replaces, as a scalar would
        else:
            out[key] = merge_values(out[key], value)
    return out


def merge_values(base: Any, over: Any) -> Any:
    """Generic rule: mappings merge recursively, sequences append, scalars are replaced."""
    if isinstance(over, Reset):
        return None
    if isinstance(over, Override):
        return strip_tags(over.value)
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if isinstance(v, Reset):
                out.pop(k, None)
            elif k in out:
                out[k] = merge_values(out[k], v)
            else:
                out[k] = strip_tags(v)
        return out
    if isinstance(base, list) and isinstance(over, list):
        return [*base, *strip_tags(over)]
    return strip_tags(over)


def merge_top(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Two normalised files: services merge per service, networks and volumes per name, the
    later `name` wins."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Reset):
            out.pop(key, None)
        elif key == "services" and isinstance(value, dict):
            services = dict(out.get("services") or {})
            for name, svc in value.items():
                if isinstance(svc, Reset):
                    services.pop(name, None)
                elif name in services and not isinstance(svc, Override):
                    services[name] = merge_service(services[name], svc)
                else:
                    services[name] = strip_tags(svc.value if isinstance(svc, Override) else svc)
            out["services"] = services
        elif key in out:
            out[key] = merge_values(out[key], value)
        else:
            out[key] = strip_tags(value)
    return out


def strip_tags(value: Any) -> Any:
    """`value` without merge tags (a file's own tags mean nothing once it is the base)."""
    if isinstance(value, Override):
        return strip_tags(value.value)
    if isinstance(value, dict):
        return {k: strip_tags(v) for k, v in value.items() if not isinstance(v, Reset)}
    if isinstance(value, list):
        return [strip_tags(v) for v in value if not isinstance(v, Reset)]
    return value
