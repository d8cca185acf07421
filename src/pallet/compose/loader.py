"""Loading a Compose project: files, environment, interpolation, validation, normalisation,
merging, profiles and the project name.

The pipeline, per file: YAML (with the `!reset` / `!override` tags) -> interpolation (the
`.env` file and the environment) -> validation (schema.py: key path and reason) ->
normalisation to the long forms (ports, volumes, depends_on, environment as mappings...) ->
merge onto the files before (merge.py). Then, once: `env_file` folded into `environment`,
references checked (depends_on, networks, volumes), the dependency graph checked for cycles,
profiles applied, the project named.

Which files: `-f` (several, in order), else $COMPOSE_FILE (separated by `:`), else the first of
compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml found in the working
directory or the nearest parent that has one (docker compose's lookup). Relative paths in every
file resolve against the project directory, the first file's directory unless
`--project-directory` says otherwise (Compose Specification, "Merge": paths are relative to the
base file).

The project name, first found: `-p`, $COMPOSE_PROJECT_NAME (the environment or `.env`), the
top-level `name:`, the project directory's base name. Given names must match
`^[a-z0-9][a-z0-9_-]*$`; the directory's name is normalised as Compose does (lowercase, other
characters dropped, leading `_`/`-` trimmed: compose-go `NormalizeProjectName`).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from pallet.compose import envfile, schema
from pallet.compose.interpolate import interpolate
from pallet.compose.merge import Override, Reset, merge_top
from pallet.errors import InvalidArgument, NotFound

DEFAULT_FILENAMES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True)
class Options:
    """What the command line and the environment say about where the project is."""

    files: tuple[str, ...] = ()
    project_name: str | None = None
    project_directory: str | None = None
    env_files: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    environ: dict[str, str] | None = None  # None: os.environ
    workdir: str | None = None  # None: os.getcwd()


@dataclass
class Project:
    """A loaded project: `services` holds the enabled services, normalised and merged."""

    name: str
    working_dir: str
    config_files: list[str]
    services: dict[str, dict[str, Any]]
    networks: dict[str, dict[str, Any]]
    volumes: dict[str, dict[str, Any]]
    environment: dict[str, str]
    disabled: dict[str, dict[str, Any]] = field(default_factory=dict)

    def service(self, name: str) -> dict[str, Any]:
        if name in self.services:
            return self.services[name]
        if name in self.disabled:
            raise InvalidArgument(f"service {name!r} is disabled by its profiles "
                                  f"({', '.join(self.disabled[name].get('profiles') or [])}): "
                                  "enable one with --profile")
        raise NotFound(f"no such service: {name}")

    def to_dict(self) -> dict[str, Any]:
        """The resolved model, as `config` prints it."""
        out: dict[str, Any] = {"name": self.name, "services": self.services}
        if self.networks:
            out["networks"] = self.networks
        if self.volumes:
            out["volumes"] = self.volumes
        return out


# -- files and YAML ------------------------------------------------------------------------------


def find_files(workdir: str) -> list[str]:
    """The default compose file of `workdir` or its nearest parent that has one."""
    d = os.path.abspath(workdir)
    while True:
        for name in DEFAULT_FILENAMES:
            p = os.path.join(d, name)
            if os.path.isfile(p):
                return [p]
        parent = os.path.dirname(d)
        if parent == d:
            raise NotFound(f"no configuration file provided: none of {', '.join(DEFAULT_FILENAMES)} "
                           f"in {os.path.abspath(workdir)} or its parents")
        d = parent


def _yaml_loader() -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def reset(loader: Any, node: Any) -> Reset:
        return Reset()

    def override(loader: Any, node: Any) -> Override:
        if isinstance(node, yaml.MappingNode):
            return Override(loader.construct_mapping(node, deep=True))
        if isinstance(node, yaml.SequenceNode):
            return Override(loader.construct_sequence(node, deep=True))
        return Override(loader.construct_scalar(node))

    Loader.add_constructor("!reset", reset)
    Loader.add_constructor("!override", override)
    return Loader


def parse_yaml(text: str, source: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{source}: invalid YAML: {exc}") from None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise NotFound(f"compose file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read compose file {path}: {exc}") from exc


# -- the project ---------------------------------------------------------------------------------


def normalize_project_name(name: str) -> str:
    """compose-go NormalizeProjectName: lowercase, keep [a-z0-9_-], trim leading '_' and '-'."""
    return "".join(re.findall(r"[a-z0-9_-]", name.lower())).lstrip("_-")


def check_project_name(name: str, where: str) -> str:
    if not _PROJECT_NAME.fullmatch(name):
        raise InvalidArgument(f"{where} {name!r} is not a valid project name: it must contain only "
                              "lowercase letters, digits, dashes and underscores, and start with a "
                              "letter or a digit")
    return name


def load(opts: Options) -> Project:
    """Load the project `opts` point at; InvalidArgument/NotFound/NotSupported say what is wrong."""
    environ = dict(os.environ if opts.environ is None else opts.environ)
    workdir = os.path.abspath(opts.workdir or os.getcwd())
    files = list(opts.files)
    if not files and environ.get("COMPOSE_FILE"):
        files = environ["COMPOSE_FILE"].split(environ.get("COMPOSE_PATH_SEPARATOR") or os.pathsep)
    if files:
        files = [os.path.abspath(os.path.join(workdir, f)) for f in files]
    project_dir = os.path.abspath(os.path.join(workdir, opts.project_directory)) if opts.project_directory \
        else os.path.dirname(files[0]) if files else None
    env_files = [os.path.join(workdir, f) for f in opts.env_files]
    if not env_files:
        base = project_dir or workdir
        if os.path.isfile(os.path.join(base, ".env")):
            env_files = [os.path.join(base, ".env")]
    dotenv: dict[str, str] = {}
    for path in env_files:
        dotenv.update(envfile.read(path, lambda k: environ.get(k, dotenv.get(k))))
    # The environment wins over .env (Compose: "Shell environment variables take precedence").
    env = {**dotenv, **environ}
    if not files:
        if env.get("COMPOSE_FILE"):  # set in .env
            sep = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
            files = [os.path.abspath(os.path.join(workdir, f)) for f in env["COMPOSE_FILE"].split(sep)]
        else:
            files = find_files(workdir)
    if project_dir is None:
        project_dir = os.path.dirname(files[0])
    lookup = env.get

    def display(path: str) -> str:
        return os.path.relpath(path, workdir) if path.startswith(workdir + os.sep) else path

    merged: dict[str, Any] = {}
    for path in files:
        source = display(path)
        doc = parse_yaml(_read(path), source)
        doc = interpolate(doc, lookup)
        schema.validate(doc, source)
        try:
            merged = merge_top(merged, normalize_file(doc, project_dir, env))
        except schema.ValidationError as exc:
            raise schema.ValidationError(f"{source}: {exc}") from None

    services_all: dict[str, dict[str, Any]] = merged.get("services") or {}
    if not services_all:
        raise InvalidArgument(f"{display(files[0])}: no service is defined (the file needs a services: "
                              "mapping)")
    for name, svc in services_all.items():
        _finish_service(name, svc, project_dir, env)
    networks = {k: _network(k, v) for k, v in (merged.get("networks") or {}).items()}
    volumes = {k: _volume(k, v) for k, v in (merged.get("volumes") or {}).items()}
    _check_references(services_all, networks, volumes)
    from pallet.compose.graph import check_cycles

    check_cycles(services_all)

    if opts.project_name:
        name = check_project_name(opts.project_name, "-p")
    elif env.get("COMPOSE_PROJECT_NAME"):
        name = check_project_name(env["COMPOSE_PROJECT_NAME"], "COMPOSE_PROJECT_NAME")
    elif merged.get("name"):
        name = check_project_name(str(merged["name"]), "name:")
    else:
        name = normalize_project_name(os.path.basename(project_dir))
        if not name:
            raise InvalidArgument(f"cannot derive a project name from the directory {project_dir}: "
                                  "give one with -p")
    profiles = list(opts.profiles) or [p for p in (env.get("COMPOSE_PROFILES") or "").split(",") if p]
    enabled, disabled = apply_profiles(services_all, profiles)
    if "default" not in networks and any(
            "default" in (s.get("networks") or {}) for s in enabled.values()):
        networks["default"] = _network("default", {})
    return Project(name=name, working_dir=project_dir, config_files=files, services=enabled,
                   networks=networks, volumes=volumes, environment=env, disabled=disabled)


def by_name(name: str) -> Project:
    """A project known only by its name (`pallet compose -p NAME down|ps|logs|top|images`
    without a compose file, as docker compose allows): the daemon's labels say the rest."""
    return Project(name=check_project_name(name, "-p"), working_dir=os.getcwd(), config_files=[],
                   services={}, networks={}, volumes={}, environment={})


def apply_profiles(services: dict[str, dict[str, Any]], profiles: list[str]
                   ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(enabled, disabled): a service without `profiles` is always enabled, one with them only
    when one is active (`*` activates all). `enable_services` later turns on services named on
    the command line and their dependencies, as docker compose does."""
    active = set(profiles)
    enabled, disabled = {}, {}
    for name, svc in services.items():
        own = svc.get("profiles") or []
        if not own or "*" in active or active & set(own):
            enabled[name] = svc
        else:
            disabled[name] = svc
    for name, svc in enabled.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            if dep in disabled and spec.get("required", True):
                raise InvalidArgument(f"service {name!r} depends on {dep!r}, which is disabled by its "
                                      f"profiles ({', '.join(disabled[dep].get('profiles') or [])})")
    return enabled, disabled


def enable_services(project: Project, names: list[str]) -> None:
    """Services named on the command line run whatever their profiles, with their dependencies."""
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in project.disabled:
            project.services[name] = project.disabled.pop(name)
        svc = project.service(name)
        todo.extend(d for d in (svc.get("depends_on") or {}) if d in project.disabled)


# -- normalisation -------------------------------------------------------------------------------


def normalize_file(doc: dict[str, Any], project_dir: str, env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in doc.items() if not k.startswith("x-") and k != "version"}
    services: dict[str, Any] = {}
    for name, svc in (doc.get("services") or {}).items():
        if isinstance(svc, Reset | Override):
            services[name] = svc if isinstance(svc, Reset) else Override(
                normalize_service(svc.value or {}, project_dir, env))
        else:
            try:
                services[name] = normalize_service(svc or {}, project_dir, env)
            except schema.ValidationError as exc:
                raise schema.ValidationError(f"services.{name}.{exc}") from None
    out["services"] = services
    for key in ("networks", "volumes"):
        if key in doc:
            out[key] = {k: (v if isinstance(v, Reset) else
                            _untagged_dict(v)) for k, v in (doc[key] or {}).items()}
    return out


def _untagged_dict(v: Any) -> dict[str, Any]:
    v = v.value if isinstance(v, Override) else v
    return dict(v or {})


def _bool(v: Any) -> bool:
    return v if isinstance(v, bool) else str(v).lower() == "true"


def _str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


def _mapping(v: Any, env: dict[str, str] | None, sep: str = "=") -> dict[str, str | None]:
    """A list of `K=V` (or `K` alone) or a mapping, as a mapping of strings; a value left out
    comes from `env` when given (environment, build args), else is None."""
    out: dict[str, str | None] = {}
    items: list[tuple[str, str | None]]
    if isinstance(v, dict):
        items = [(str(k), None if x is None else _str(x)) for k, x in v.items()]
    else:
        items = []
        for item in v or []:
            k, eq, x = str(item).partition(sep)
            items.append((k, x if eq else None))
    for k, val in items:
        if val is None and env is not None:
            val = env.get(k)
        out[k] = val
    return out


def _abs(path: str, base: str) -> str:
    path = os.path.expanduser(path)
    return os.path.normpath(os.path.join(base, path))


def _tagged(fn: Any) -> Any:
    """Apply a normaliser through an `!override` tag, leaving `!reset` alone."""
    def apply(v: Any, *a: Any) -> Any:
        if isinstance(v, Reset):
            return v
        if isinstance(v, Override):
            return Override(fn(v.value, *a))
        return fn(v, *a)
    return apply


def normalize_service(svc: dict[str, Any], project_dir: str, env: dict[str, str]) -> dict[str, Any]:
    """One service in long forms (the shapes `config` prints and `convert` reads)."""
    out: dict[str, Any] = {}
    for key, value in svc.items():
        if key.startswith("x-"):
            continue
        norm = _NORMALIZERS.get(key)
        out[key] = _tagged(norm)(value, project_dir, env) if norm else value
    return out


def _n_build(v: Any, project_dir: str, env: dict[str, str]) -> dict[str, Any]:
    b = {"context": v} if isinstance(v, str) else dict(v)
    b["context"] = _abs(str(b.get("context") or "."), project_dir)
    if "args" in b:
        b["args"] = _mapping(b["args"], env)
    if "labels" in b:
        b["labels"] = {k: x or "" for k, x in _mapping(b["labels"], None).items()}
    return b


def _n_command(v: Any, *_: Any) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str):
        try:
            return shlex.split(v)
        except ValueError as exc:
            raise InvalidArgument(f"cannot split the command {v!r}: {exc}") from None
    return [str(x) for x in v]


def _n_environment(v: Any, project_dir: str, env: dict[str, str]) -> dict[str, str | None]:
    return _mapping(v, env)


def _n_labels(v: Any, *_: Any) -> dict[str, str]:
    return {k: x or "" for k, x in _mapping(v, None).items()}


def _n_kv(v: Any, *_: Any) -> dict[str, str]:
    return {k: x or "" for k, x in _mapping(v, None).items()}


def _n_extra_hosts(v: Any, *_: Any) -> dict[str, str]:
    if isinstance(v, dict):
        return {str(k): ",".join(map(str, x)) if isinstance(x, list) else _str(x) for k, x in v.items()}
    out = {}
    for item in v:
        host, eq, ip = str(item).partition("=")
        if not eq:
            host, _sep, ip = str(item).partition(":")  # legacy HOST:IP, split at the first colon
        out[host] = ip
    return out


def _n_list(v: Any, *_: Any) -> list[str]:
    return [v] if isinstance(v, str) else [str(x) for x in v]


def _n_env_file(v: Any, project_dir: str, env: dict[str, str]) -> list[dict[str, Any]]:
    items = [v] if isinstance(v, str) else v
    out = []
    for item in items:
        spec = {"path": item} if isinstance(item, str) else dict(item)
        spec["path"] = _abs(spec["path"], project_dir)
        spec["required"] = _bool(spec.get("required", True))
        out.append(spec)
    return out


def parse_port(spec: Any, path: str = "ports") -> list[dict[str, Any]]:
    """`[HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTOCOL]` or the long form, as long
    forms (a range gives one entry per port)."""
    if isinstance(spec, dict):
        long: dict[str, Any] = {"target": int(spec["target"]), "protocol": spec.get("protocol", "tcp"),
                                "mode": spec.get("mode", "ingress")}
        if spec.get("published") not in (None, ""):
            long["published"] = str(spec["published"])
        if spec.get("host_ip"):
            long["host_ip"] = spec["host_ip"]
        return [long]
    text = str(spec)
    body, _, proto = text.partition("/")
    proto = proto or "tcp"
    host_ip = ""
    if body.startswith("["):  # [::1]:8080:80
        end = body.find("]")
        host_ip, body = body[1:end], body[end + 2:]
    parts = body.rsplit(":", 2)
    if len(parts) == 3:
        host_ip, published, target = host_ip or parts[0], parts[1], parts[2]
    elif len(parts) == 2:
        published, target = parts
    else:
        published, target = "", parts[0]
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", target)
    pm = re.fullmatch(r"(\d+)(?:-(\d+))?", published) if published else None
    if not m or (published and not pm) or proto not in ("tcp", "udp", "sctp"):
        raise schema.ValidationError(f"{path}: invalid port {text!r}: want "
                                     "[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]")
    t0, t1 = int(m.group(1)), int(m.group(2) or m.group(1))
    targets = list(range(t0, t1 + 1))
    published_list: list[str | None] = [None] * len(targets)
    if pm:
        p0, p1 = int(pm.group(1)), int(pm.group(2) or pm.group(1))
        if p1 - p0 == t1 - t0:
            published_list = [str(p0 + i) for i in range(len(targets))]
        elif t0 == t1:
            published_list = [f"{p0}-{p1}" if p1 != p0 else str(p0)]
        else:
            raise schema.ValidationError(f"{path}: invalid port {text!r}: the host and container "
                                         "ranges differ in size")
    out = []
    for t, pub in zip(targets, published_list, strict=True):
        p: dict[str, Any] = {"target": t, "protocol": proto, "mode": "ingress"}
        if pub is not None:
            p["published"] = pub
        if host_ip:
            p["host_ip"] = host_ip
        out.append(p)
    return out


def _n_ports(v: Any, *_: Any) -> list[dict[str, Any]]:
    return [p for i, spec in enumerate(v) for p in parse_port(spec, f"ports[{i}]")]


def parse_volume(spec: Any, project_dir: str) -> dict[str, Any]:
    """`[SOURCE:]TARGET[:MODE]` or the long form, as a long form; a SOURCE that starts with
    `/`, `.` or `~` is a bind mount, otherwise a volume name."""
    if isinstance(spec, dict):
        v = dict(spec)
        if v.get("type") == "bind" and v.get("source"):
            v["source"] = _abs(v["source"], project_dir)
        if "read_only" in v:
            v["read_only"] = _bool(v["read_only"])
        if not v.get("target"):
            raise schema.ValidationError(f"volume {spec!r}: target is required")
        return v
    parts = str(spec).split(":")
    if len(parts) > 3 or not parts[-1 if len(parts) == 1 else 1]:
        raise schema.ValidationError(f"invalid volume specification {spec!r}: want [SOURCE:]TARGET[:MODE]")
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0]}
    source, target = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 else []
    out: dict[str, Any]
    if source.startswith(("/", ".", "~")):
        out = {"type": "bind", "source": _abs(source, project_dir), "target": target,
               "bind": {"create_host_path": True}}
    else:
        out = {"type": "volume", "source": source, "target": target}
    for mode in modes:
        if mode == "ro":
            out["read_only"] = True
        elif mode == "rw":
            pass
        elif mode == "nocopy" and out["type"] == "volume":
            out["volume"] = {"nocopy": True}
        elif mode in ("z", "Z") and out["type"] == "bind":
            out.setdefault("bind", {})["selinux"] = mode
        elif mode in ("shared", "rshared", "slave", "rslave", "private", "rprivate") \
                and out["type"] == "bind":
            out.setdefault("bind", {})["propagation"] = mode
        else:
            raise schema.ValidationError(f"invalid volume specification {spec!r}: unknown mode {mode!r}")
    return out


def _n_volumes(v: Any, project_dir: str, env: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for i, x in enumerate(v):
        try:
            out.append(parse_volume(x, project_dir))
        except schema.ValidationError as exc:
            raise schema.ValidationError(f"volumes[{i}]: {exc}") from None
    return out


def _n_networks(v: Any, *_: Any) -> dict[str, dict[str, Any]]:
    if isinstance(v, list):
        return {str(n): {} for n in v}
    return {str(n): dict(spec.value if isinstance(spec, Override) else spec or {}) for n, spec in v.items()}


def _n_depends_on(v: Any, *_: Any) -> dict[str, dict[str, Any]]:
    if isinstance(v, list):
        return {str(n): {"condition": "service_started", "required": True} for n in v}
    out = {}
    for n, spec in v.items():
        spec = dict(spec or {})
        out[str(n)] = {"condition": spec.get("condition", "service_started"),
                       "required": _bool(spec.get("required", True)),
                       **({"restart": _bool(spec["restart"])} if "restart" in spec else {})}
    return out


def _n_healthcheck(v: Any, *_: Any) -> dict[str, Any]:
    h = dict(v)
    if isinstance(h.get("test"), str):
        h["test"] = ["CMD-SHELL", h["test"]]
    if "disable" in h:
        h["disable"] = _bool(h["disable"])
    if "retries" in h:
        h["retries"] = int(h["retries"])
    return h


def _n_ulimits(v: Any, *_: Any) -> dict[str, dict[str, int]]:
    out = {}
    for name, spec in v.items():
        if isinstance(spec, dict):
            out[name] = {"soft": int(spec["soft"]), "hard": int(spec["hard"])}
        else:
            out[name] = {"soft": int(spec), "hard": int(spec)}
    return out


def _n_devices(v: Any, *_: Any) -> list[dict[str, str]]:
    out = []
    for item in v:
        if isinstance(item, dict):
            d = {"source": item["source"], "target": item.get("target") or item["source"],
                 "permissions": item.get("permissions") or "rwm"}
        else:
            parts = str(item).split(":")
            d = {"source": parts[0], "target": parts[1] if len(parts) > 1 and parts[1] else parts[0],
                 "permissions": parts[2] if len(parts) > 2 else "rwm"}
        out.append(d)
    return out


def _n_bool(v: Any, *_: Any) -> bool:
    return _bool(v)


def _n_int(v: Any, *_: Any) -> int:
    return int(v)


def _n_deploy(v: Any, *_: Any) -> dict[str, Any]:
    d = dict(v)
    if "replicas" in d:
        d["replicas"] = int(d["replicas"])
    return d


def _n_expose(v: Any, *_: Any) -> list[str]:
    return [str(x) for x in v]


_NORMALIZERS: dict[str, Any] = {
    "build": _n_build, "command": _n_command, "entrypoint": _n_command,
    "environment": _n_environment, "labels": _n_labels, "sysctls": _n_kv,
    "extra_hosts": _n_extra_hosts, "dns": _n_list, "dns_search": _n_list, "tmpfs": _n_list,
    "env_file": _n_env_file, "ports": _n_ports, "volumes": _n_volumes, "networks": _n_networks,
    "depends_on": _n_depends_on, "healthcheck": _n_healthcheck, "ulimits": _n_ulimits,
    "devices": _n_devices, "init": _n_bool, "read_only": _n_bool, "tty": _n_bool,
    "stdin_open": _n_bool, "privileged": _n_bool, "scale": _n_int, "pids_limit": _n_int,
    "deploy": _n_deploy, "expose": _n_expose,
}


def _finish_service(name: str, svc: dict[str, Any], project_dir: str, env: dict[str, str]) -> None:
    """After merging: env_file folded under environment, the default network, checks that need
    the whole service."""
    if not svc.get("image") and not svc.get("build"):
        raise schema.ValidationError(f"services.{name}: neither an image nor a build context is given")
    files = svc.pop("env_file", None) or []
    if files:
        from_files: dict[str, str] = {}
        for spec in files:
            if not spec.get("required", True) and not os.path.exists(spec["path"]):
                continue
            from_files.update(envfile.read(spec["path"], env.get))
        svc["environment"] = {**from_files, **(svc.get("environment") or {})}
    if "networks" not in svc and svc.get("network_mode") is None:
        svc["networks"] = {"default": {}}
    if svc.get("container_name") and int(svc.get("scale", (svc.get("deploy") or {}).get("replicas", 1))) > 1:
        raise schema.ValidationError(f"services.{name}: container_name is set, so the service cannot "
                                     "be scaled beyond 1 container")


def _network(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    n = dict(spec or {})
    ext = n.get("external")
    if isinstance(ext, dict):  # the 3.x form external: {name: x}
        n["name"], n["external"] = ext.get("name") or n.get("name"), True
    elif ext is not None:
        n["external"] = _bool(ext)
    for key in ("labels", "driver_opts"):
        if key in n:
            n[key] = _n_kv(n[key])
    return n


def _volume(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _network(name, spec)


def _check_references(services: dict[str, dict[str, Any]], networks: dict[str, Any],
                      volumes: dict[str, Any]) -> None:
    for name, svc in services.items():
        for dep in svc.get("depends_on") or {}:
            if dep not in services:
                raise schema.ValidationError(f"services.{name}.depends_on: service {dep!r} is not defined")
            if dep == name:
                raise schema.ValidationError(f"services.{name}.depends_on: a service cannot depend on itself")
        for net in svc.get("networks") or {}:
            if net != "default" and net not in networks:
                raise schema.ValidationError(f"services.{name}.networks: network {net!r} is not "
                                             "declared in the top-level networks")
        for v in svc.get("volumes") or []:
            if v.get("type") == "volume" and v.get("source") and v["source"] not in volumes:
                raise schema.ValidationError(f"services.{name}.volumes: volume {v['source']!r} is not "
                                             "declared in the top-level volumes")
        mode = svc.get("network_mode")
        if mode is not None and svc.get("networks") and "networks" in svc:
            raise schema.ValidationError(f"services.{name}: network_mode and networks cannot be "
                                         "combined")
        if mode is not None and mode not in ("host", "none", "bridge"):
            raise schema.ValidationError(f"services.{name}.network_mode: {mode!r} is not supported "
                                         "(host, none or bridge)")
