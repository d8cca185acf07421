"""`pallet compose config` and the verb's error handling, without a daemon: the resolved model
as YAML/JSON, the listing flags, exit statuses 14 (no file) and 15 (invalid file)."""

from __future__ import annotations

import json
import textwrap

import yaml

from pallet.cli.commands import compose as verb
from pallet.cli.main import Context
from pallet.compose import convert
from pallet.compose.loader import Options, load

APP = """
    services:
      web:
        image: "busybox:${TAG:-1.36}"
        ports: ["8080:80"]
        depends_on: [db]
      db:
        image: busybox
        volumes: [data:/data]
      dbg: {image: busybox, profiles: [debug]}
    volumes: {data: {}}
"""


def run(monkeypatch, tmp_path, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    monkeypatch.delenv("COMPOSE_FILE", raising=False)
    monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
    code = verb.main(Context(), list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_config_prints_the_resolved_model(monkeypatch, tmp_path, capsys):
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(APP))
    monkeypatch.setenv("TAG", "1.37")
    code, out, _ = run(monkeypatch, tmp_path, capsys, "-p", "cfg", "config")
    assert code == 0
    model = yaml.safe_load(out)
    expected = load(Options(project_name="cfg", workdir=str(tmp_path))).to_dict()
    assert model == json.loads(json.dumps(expected))
    assert model["services"]["web"]["image"] == "busybox:1.37"
    assert list(model["services"]) == ["web", "db"]  # dbg is behind a profile
    code, out, _ = run(monkeypatch, tmp_path, capsys, "-p", "cfg", "config", "--format", "json")
    assert json.loads(out) == model
    listed = run(monkeypatch, tmp_path, capsys, "--profile", "debug", "config", "--services")[1]
    assert listed == "web\ndb\ndbg\n"
    assert run(monkeypatch, tmp_path, capsys, "config", "--volumes")[1] == "data\n"
    code, out, _ = run(monkeypatch, tmp_path, capsys, "-p", "cfg", "config", "--hash", "web")
    assert out == f"web {convert.config_hash(expected['services']['web'])}\n"
    assert run(monkeypatch, tmp_path, capsys, "config", "-q") == (0, "", "")


def test_exit_statuses_for_missing_and_invalid_files(monkeypatch, tmp_path, capsys):
    code, _, err = run(monkeypatch, tmp_path, capsys, "config")
    assert code == 14 and err.startswith("pallet compose: no configuration file provided")
    (tmp_path / "compose.yaml").write_text("services: {web: {image: busybox, restart: maybe}}\n")
    code, _, err = run(monkeypatch, tmp_path, capsys, "config")
    assert code == 15
    assert err == ("pallet compose: compose.yaml: services.web.restart: must be no, always, "
                   "unless-stopped or on-failure[:max-retries], not the string 'maybe'\n")
    (tmp_path / "compose.yaml").write_text("services: {web: {image: busybox, secrets: [x]}}\n")
    code, _, err = run(monkeypatch, tmp_path, capsys, "config")
    assert code == 15 and "services.web.secrets: not supported by pallet compose" in err
