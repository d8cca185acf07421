"""Loading Compose projects: file lookup, `.env`, merging `-f` files, project names, profiles,
normalisation to long forms, and validation errors that carry the key path and the reason."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pallet.compose import loader
from pallet.compose.loader import Options, enable_services, load, parse_port, parse_volume
from pallet.errors import InvalidArgument, NotFound, NotSupported


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def project(tmp_path: Path, text: str, *, env: dict[str, str] | None = None, **opts):
    f = write(tmp_path / "app" / "compose.yaml", text)
    return load(Options(files=(str(f),), environ=env or {}, workdir=str(tmp_path), **opts))


def test_lookup_order_and_parent_directories(tmp_path):
    app = tmp_path / "Shop.Front"
    write(app / "docker-compose.yml", "services: {a: {image: x}}")
    write(app / "compose.yaml", "services: {b: {image: x}}")
    (app / "sub" / "deeper").mkdir(parents=True)
    p = load(Options(environ={}, workdir=str(app / "sub" / "deeper")))
    assert list(p.services) == ["b"]  # compose.yaml first, found from a subdirectory
    assert p.config_files == [str(app / "compose.yaml")]
    assert p.working_dir == str(app)
    assert p.name == "shopfront"  # normalised directory name
    with pytest.raises(NotFound, match="no configuration file provided"):
        load(Options(environ={}, workdir="/"))


def test_version_is_accepted_and_ignored_and_x_keys_are_dropped(tmp_path):
    p = project(tmp_path, """
        version: "2.4"
        x-common: &common {image: busybox}
        services:
          a:
            <<: *common
            x-note: ignored
    """)
    assert p.services["a"] == {"image": "busybox", "networks": {"default": {}}}
    assert "version" not in p.to_dict()


@pytest.mark.parametrize(("given", "env", "name"), [
    ({"project_name": "explicit"}, {"COMPOSE_PROJECT_NAME": "fromenv"}, "explicit"),
    ({}, {"COMPOSE_PROJECT_NAME": "fromenv"}, "fromenv"),
    ({}, {}, "fromfile"),
])
def test_project_name_precedence(tmp_path, given, env, name):
    p = project(tmp_path, "name: fromfile\nservices: {a: {image: x}}", env=env, **given)
    assert p.name == name


@pytest.mark.parametrize("bad", ["Upper", "-dash", "has space", "dot.ted"])
def test_invalid_explicit_project_names_are_refused(tmp_path, bad):
    with pytest.raises(InvalidArgument, match="is not a valid project name"):
        project(tmp_path, "services: {a: {image: x}}", project_name=bad)


def test_normalize_project_name():
    assert loader.normalize_project_name("My App_2.0") == "myapp_20"
    assert loader.normalize_project_name("__-x") == "x"


def test_dotenv_interpolation_and_environment_precedence(tmp_path):
    write(tmp_path / "app" / ".env", "TAG=1.0\nPORT=8000\nCOMPOSE_PROJECT_NAME=dotenvname\n")
    p = project(tmp_path, """
        services:
          web:
            image: "busybox:${TAG}"
            ports: ["${PORT}:80"]
            environment: [SHELL_ONLY, "LITERAL=$$HOME"]
    """, env={"PORT": "9000", "SHELL_ONLY": "yes"})
    web = p.services["web"]
    assert web["image"] == "busybox:1.0"
    assert web["ports"] == [{"target": 80, "protocol": "tcp", "mode": "ingress", "published": "9000"}]
    assert web["environment"] == {"SHELL_ONLY": "yes", "LITERAL": "$HOME"}
    assert p.name == "dotenvname"


def test_env_file_option_replaces_dotenv(tmp_path):
    write(tmp_path / "app" / ".env", "TAG=dotenv\n")
    write(tmp_path / "other.env", "TAG=other\n")
    p = project(tmp_path, "services: {web: {image: 'b:${TAG}'}}", env_files=("other.env",))
    assert p.services["web"]["image"] == "b:other"


def test_required_variable_error(tmp_path):
    with pytest.raises(InvalidArgument, match=r"required variable DB_PASSWORD is missing a value in "
                                              r"services\.db\.environment\.PW: set it in \.env"):
        project(tmp_path, """
            services:
              db: {image: x, environment: {PW: "${DB_PASSWORD:?set it in .env}"}}
        """)


def test_service_env_file_is_folded_under_environment(tmp_path):
    write(tmp_path / "app" / "web.env", "A=from-file\nB=from-file\n")
    p = project(tmp_path, """
        services:
          web:
            image: x
            env_file: [web.env, {path: missing.env, required: false}]
            environment: {B: explicit}
    """)
    assert p.services["web"]["environment"] == {"A": "from-file", "B": "explicit"}
    assert "env_file" not in p.services["web"]
    with pytest.raises(InvalidArgument, match=r"missing\.env not found"):
        project(tmp_path, "services: {web: {image: x, env_file: missing.env}}")


def test_merge_rules_across_files(tmp_path):
    base = write(tmp_path / "app" / "compose.yaml", """
        services:
          web:
            image: busybox
            command: ["httpd", "-f"]
            environment: {A: "1", B: "1"}
            labels: [tier=front]
            ports: ["8080:80", "443:443"]
            volumes: ["data:/data", "./conf:/conf:ro"]
            dns: [1.1.1.1]
            cap_add: [NET_ADMIN]
            healthcheck: {test: ["CMD", "true"], interval: 5s}
            depends_on: [db]
          db: {image: busybox}
        volumes: {data: {}}
    """)
    over = write(tmp_path / "app" / "override.yaml", """
        services:
          web:
            image: busybox:musl
            command: sleep 1
            environment: [B=2, C=3]
            labels: {extra: "yes"}
            ports: ["8080:80", "9090:90"]
            volumes: [{type: volume, source: other, target: /data}]
            dns: 8.8.8.8
            cap_add: [NET_ADMIN, SYS_TIME]
            healthcheck: {interval: 1s}
            depends_on: {cache: {condition: service_started}}
          cache: {image: busybox}
        volumes: {other: {}}
    """)
    p = load(Options(files=(str(base), str(over)), environ={}, workdir=str(tmp_path)))
    web = p.services["web"]
    assert web["image"] == "busybox:musl"
    assert web["command"] == ["sleep", "1"]  # shell commands are replaced, not appended
    assert web["environment"] == {"A": "1", "B": "2", "C": "3"}
    assert web["labels"] == {"tier": "front", "extra": "yes"}
    assert [(x.get("published"), x["target"]) for x in web["ports"]] == [
        ("8080", 80), ("443", 443), ("9090", 90)]
    assert [(v.get("source"), v["target"]) for v in web["volumes"]] == [
        ("other", "/data"), (str(tmp_path / "app" / "conf"), "/conf")]  # unique by target
    assert web["dns"] == ["1.1.1.1", "8.8.8.8"]
    assert web["cap_add"] == ["NET_ADMIN", "SYS_TIME"]
    assert web["healthcheck"] == {"test": ["CMD", "true"], "interval": "1s"}
    assert set(web["depends_on"]) == {"db", "cache"}
    assert list(p.services) == ["web", "db", "cache"]
    assert set(p.volumes) == {"data", "other"}
    assert p.working_dir == str(tmp_path / "app")  # the first file's directory


def test_reset_and_override_tags(tmp_path):
    base = write(tmp_path / "a.yaml", """
        services:
          web: {image: x, ports: ["80:80"], environment: {A: "1"}, cap_add: [CHOWN]}
    """)
    over = write(tmp_path / "b.yaml", """
        services:
          web:
            ports: !reset []
            environment: !override {B: "2"}
            cap_add: !reset null
    """)
    p = load(Options(files=(str(base), str(over)), environ={}, workdir=str(tmp_path)))
    web = p.services["web"]
    assert "ports" not in web and "cap_add" not in web
    assert web["environment"] == {"B": "2"}


@pytest.mark.parametrize(("text", "message"), [
    ("services: {web: {image: 5}}", "services.web.image: must be a string, not a number"),
    ("services: {web: {image: x, ports: [[1]]}}", "services.web.ports[0]: must be a string, a number, or "
                                                  "a mapping with target"),
    ("services: {web: {image: x, ports: [{published: 80}]}}", "services.web.ports[0]: must be a string"),
    ("services: {web: {image: x, imgae: y}}", "services.web: additional property 'imgae' is not allowed"),
    ("services: {web: {image: x, restart: sometimes}}", "services.web.restart: must be no, always, "
                                                        "unless-stopped or on-failure"),
    ("services: {web: {image: x, depends_on: {db: {condition: service_ready}}}}",
     "services.web.depends_on: must be a list of service names or a mapping"),
    ("services: {web: {image: x, healthcheck: {interval: soon}}}",
     "services.web.healthcheck.interval: must be a duration like 10s or 1m30s, not 'soon'"),
    ("services: {web: {image: x, deploy: {resources: {limits: {memory: lots}}}}}",
     "services.web.deploy.resources.limits.memory: must be a byte value like 512m or 1g"),
    ("services: {web: {image: x, environment: 3}}", "services.web.environment: must be a list or a mapping"),
    ("services: {web: {image: x, cap_add: [A, A]}}", "services.web.cap_add: items must be unique, A appears"),
    ("services: {web: {image: x}}\nnetworks: {n: {driver: [x]}}", "networks.n.driver: must be a string"),
    ("servics: {}", "(top level): additional property 'servics' is not allowed"),
    ("services: [web]", "services: must be a mapping, not a list"),
    ("services: {web: {build: {context: ., dockerfile: 1}}}", "services.web.build: must be a string "
                                                              "(the context) or a mapping"),
    ("services: {web: {}}", "services.web: neither an image nor a build context is given"),
    ("services: {web: {image: x, depends_on: [db]}}",
     "services.web.depends_on: service 'db' is not defined"),
    ("services: {web: {image: x, networks: [back]}}",
     "services.web.networks: network 'back' is not declared"),
    ("services: {web: {image: x, volumes: ['data:/d']}}",
     "services.web.volumes: volume 'data' is not declared"),
    ("services: {web: {image: x, ports: ['80:abc']}}",
     "app/compose.yaml: services.web.ports[0]: invalid port '80:abc'"),
    ("services: {web: {image: x, volumes: ['/x', 'a:b:c:d']}}",
     "app/compose.yaml: services.web.volumes[1]: invalid volume specification 'a:b:c:d'"),
    ("services: {web: {image: x, volumes: ['/a:/b:bogus']}}", "unknown mode 'bogus'"),
    ("services: {}", "no service is defined"),
    ("services: {web: {image: x, container_name: c, scale: 2}}", "cannot be scaled"),
    ("services: {web: [oops", "invalid YAML"),
])
def test_validation_errors_carry_key_path_and_reason(tmp_path, text, message):
    with pytest.raises(InvalidArgument) as exc:
        project(tmp_path, text)
    assert message in str(exc.value)
    assert str(exc.value).startswith(("app/compose.yaml: ", "services.", "dependency cycle"))


def test_unsupported_spec_keys_are_refused_not_ignored(tmp_path):
    with pytest.raises(NotSupported, match=r"services\.web\.secrets: not supported by pallet compose"):
        project(tmp_path, "services: {web: {image: x, secrets: [s]}}")
    with pytest.raises(NotSupported, match=r"configs: not supported"):
        project(tmp_path, "services: {web: {image: x}}\nconfigs: {c: {file: x}}")


def test_dependency_cycle_is_named(tmp_path):
    with pytest.raises(InvalidArgument, match=r"dependency cycle: web -> api -> db -> web"):
        project(tmp_path, """
            services:
              web: {image: x, depends_on: [api]}
              api: {image: x, depends_on: [db]}
              db: {image: x, depends_on: {web: {condition: service_healthy}}}
        """)


PROFILED = """
    services:
      web: {image: x}
      debug: {image: x, profiles: [dev]}
      mock: {image: x, profiles: [dev, test], depends_on: [fixtures]}
      fixtures: {image: x, profiles: [seed]}
"""


def test_profiles(tmp_path):
    p = project(tmp_path, PROFILED)
    assert list(p.services) == ["web"] and set(p.disabled) == {"debug", "mock", "fixtures"}
    with pytest.raises(InvalidArgument, match="disabled by its profiles"):
        p.service("debug")
    p = project(tmp_path, PROFILED, profiles=("dev", "seed"))
    assert list(p.services) == ["web", "debug", "mock", "fixtures"]
    p = project(tmp_path, PROFILED, env={"COMPOSE_PROFILES": "*"})
    assert len(p.services) == 4
    with pytest.raises(InvalidArgument, match="'mock' depends on 'fixtures', which is disabled"):
        project(tmp_path, PROFILED, profiles=("test",))
    p = project(tmp_path, PROFILED)
    enable_services(p, ["mock"])  # named on the command line: enabled with its dependencies
    assert set(p.services) == {"web", "mock", "fixtures"}


@pytest.mark.parametrize(("spec", "expected"), [
    (80, [{"target": 80, "protocol": "tcp", "mode": "ingress"}]),
    ("8080:80", [{"target": 80, "protocol": "tcp", "mode": "ingress", "published": "8080"}]),
    ("127.0.0.1:8080:80/udp", [{"target": 80, "protocol": "udp", "mode": "ingress", "published": "8080",
                                "host_ip": "127.0.0.1"}]),
    ("[::1]:53:53/udp", [{"target": 53, "protocol": "udp", "mode": "ingress", "published": "53",
                          "host_ip": "::1"}]),
    ("9000-9001:80-81", [{"target": 80, "protocol": "tcp", "mode": "ingress", "published": "9000"},
                         {"target": 81, "protocol": "tcp", "mode": "ingress", "published": "9001"}]),
    ({"target": 80, "published": 8080, "host_ip": "0.0.0.0"},
     [{"target": 80, "protocol": "tcp", "mode": "ingress", "published": "8080", "host_ip": "0.0.0.0"}]),
])
def test_ports(spec, expected):
    assert parse_port(spec) == expected


@pytest.mark.parametrize(("spec", "expected"), [
    ("/anon", {"type": "volume", "target": "/anon"}),
    ("data:/d:ro,nocopy", {"type": "volume", "source": "data", "target": "/d", "read_only": True,
                           "volume": {"nocopy": True}}),
    ("./site:/www:ro", {"type": "bind", "source": "/proj/site", "target": "/www", "read_only": True,
                        "bind": {"create_host_path": True}}),
    ("/abs:/x:rshared", {"type": "bind", "source": "/abs", "target": "/x",
                         "bind": {"create_host_path": True, "propagation": "rshared"}}),
    ({"type": "bind", "source": "rel", "target": "/x", "read_only": "true"},
     {"type": "bind", "source": "/proj/rel", "target": "/x", "read_only": True}),
])
def test_volumes(spec, expected):
    assert parse_volume(spec, "/proj") == expected


def test_long_forms_of_the_other_keys(tmp_path):
    p = project(tmp_path, """
        services:
          web:
            image: x
            command: sh -c 'echo "a b"'
            entrypoint: ["/bin/sh", "-c"]
            environment: {NUM: 1, FLAG: true, NONE: null}
            labels: [a=b, "c"]
            extra_hosts: ["db:10.0.0.2", "cache=10.0.0.3"]
            sysctls: [net.core.somaxconn=1024]
            ulimits: {nproc: 65535, nofile: {soft: 1024, hard: 2048}}
            devices: ["/dev/fuse", "/dev/null:/dev/mynull:r"]
            tmpfs: /run
            dns: 1.1.1.1
            depends_on: [db]
            healthcheck: {test: "true", retries: "3"}
            networks: {front: {aliases: [www]}, back: null}
            init: "true"
          db: {image: x}
        networks: {front: {}, back: {external: true}}
    """)
    web = p.services["web"]
    assert web["command"] == ["sh", "-c", 'echo "a b"']
    assert web["environment"] == {"NUM": "1", "FLAG": "true", "NONE": None}
    assert web["labels"] == {"a": "b", "c": ""}
    assert web["extra_hosts"] == {"db": "10.0.0.2", "cache": "10.0.0.3"}
    assert web["sysctls"] == {"net.core.somaxconn": "1024"}
    assert web["ulimits"] == {"nproc": {"soft": 65535, "hard": 65535}, "nofile": {"soft": 1024, "hard": 2048}}
    assert web["devices"] == [{"source": "/dev/fuse", "target": "/dev/fuse", "permissions": "rwm"},
                              {"source": "/dev/null", "target": "/dev/mynull", "permissions": "r"}]
    assert web["tmpfs"] == ["/run"] and web["dns"] == ["1.1.1.1"]
    assert web["depends_on"] == {"db": {"condition": "service_started", "required": True}}
    assert web["healthcheck"] == {"test": ["CMD-SHELL", "true"], "retries": 3}
    assert web["networks"] == {"front": {"aliases": ["www"]}, "back": {}}
    assert web["init"] is True
    assert p.networks == {"front": {}, "back": {"external": True}, "default": {}}  # db uses default
