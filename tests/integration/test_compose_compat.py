"""orchestr's loader against Docker Compose's, on real compose files it was not tuned on
(docker/awesome-compose, tests/data/compose-compat/): after normalising both sides, the
services, images, commands, entrypoints, environment, ports, volumes, networks and
depends_on must agree.

The judge is Debian's docker-compose (1.29.2, the last Python release; Compose v2 is not
packaged): `docker-compose config` needs no daemon. Known v1-against-v2 differences are
normalised away below, each with its reason; nothing is skipped silently.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestr.stack.loader import LoadOptions, load_project
from orchestr.stack.model import Project

pytestmark = [pytest.mark.interop]

DATA = Path(__file__).resolve().parents[1] / "data" / "compose-compat"
CASES = sorted(p.name for p in DATA.iterdir() if (p / "compose.yaml").exists())
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}


def _compose_config(directory: Path) -> dict[str, Any]:
    # v1 predates the top-level `name:` (the project is named by -p on both sides)
    text = re.sub(r"(?m)^name:.*$", "", (directory / "compose.yaml").read_text())
    done = subprocess.run(
        ["docker-compose", "-f", "-", "--project-directory", ".", "-p", "compat", "config"],
        cwd=directory, env=ENV, input=text, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, f"docker-compose config: {done.stderr}"
    return yaml.safe_load(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def compose_configs() -> dict[str, dict[str, Any]]:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose (Debian's, the judge) is not installed: scripts/setup.sh")
    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(CASES, pool.map(lambda c: _compose_config(DATA / c), CASES), strict=True))


def _words(value: Any) -> list[str] | None:
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _port(p: Any) -> tuple[str, str, int, str]:
    if isinstance(p, dict):
        published = p.get("published")
        return (p.get("host_ip") or "", "" if published is None else str(published),
                int(p["target"]), p.get("protocol") or "tcp")  # fmt: skip
    raise AssertionError(f"a short port in a normalised file: {p!r}")


def _volume(v: Any, directory: Path) -> tuple[str, str, str, bool]:
    if isinstance(v, str):  # v1 prints some volumes in the short form
        parts = v.split(":")
        if len(parts) == 1:
            return ("volume", "", parts[0], False)
        source = parts[0]
        kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
        return (kind, source, parts[1], len(parts) > 2 and "ro" in parts[2].split(","))
    source = v.get("source") or ""
    return (v["type"], source, v["target"], bool(v.get("read_only")))


def _depends(value: Any) -> dict[str, str]:
    if isinstance(value, list):  # v1 keeps the short form
        return dict.fromkeys(value, "service_started")
    return {k: (v or {}).get("condition", "service_started") for k, v in (value or {}).items()}


def _networks(value: Any) -> set[str]:
    return set(value or {"default"}) if not isinstance(value, list) else set(value)


def _environment(value: Any) -> dict[str, str | None]:
    if isinstance(value, list):
        return {k: v for k, _, v in (item.partition("=") for item in value)}
    return {k: None if v is None else str(v) for k, v in (value or {}).items()}


def _unescape(value: Any) -> Any:
    """v1's `config` prints `$$` as written (it unescapes when it runs the container);
    v2 and orchestr hold the value the container gets, `$`."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, list):
        return [_unescape(v) for v in value]
    if isinstance(value, dict):
        return {k: _unescape(v) for k, v in value.items()}
    return value


def normalised_compose(doc: dict[str, Any], directory: Path) -> dict[str, Any]:
    doc = _unescape(doc)
    out = {}
    for name, svc in (doc.get("services") or {}).items():
        healthcheck = svc.get("healthcheck") or {}
        test = healthcheck.get("test")
        out[name] = {
            "image": svc.get("image"),
            "command": _words(svc.get("command")),
            "entrypoint": _words(svc.get("entrypoint")),
            "environment": _environment(svc.get("environment")),
            "ports": sorted(_port(p) for p in svc.get("ports") or []),
            "volumes": sorted(_volume(v, directory) for v in svc.get("volumes") or []),
            "networks": set() if svc.get("network_mode") else _networks(svc.get("networks")),
            "depends_on": _depends(svc.get("depends_on")),
            # v1 keeps a string test as it is; v2 and orchestr write ["CMD-SHELL", text]
            "healthcheck": ["CMD-SHELL", test] if isinstance(test, str) else test,
        }
    return out


def normalised_orchestr(project: Project, directory: Path) -> dict[str, Any]:
    out = {}
    for name, svc in project.services.items():
        out[name] = {
            "image": svc.image,
            "command": svc.command,
            "entrypoint": svc.entrypoint,
            "environment": dict(svc.environment),
            "ports": sorted(
                (p.host_ip or "", p.published or "", p.target, p.protocol) for p in svc.ports
            ),
            "volumes": sorted((v.type, v.source or "", v.target, v.read_only) for v in svc.volumes),
            "networks": set(svc.networks),
            "depends_on": {k: d.condition for k, d in svc.depends_on.items()},
            "healthcheck": svc.healthcheck.test if svc.healthcheck else None,
        }
    return out


@pytest.mark.parametrize("case", CASES)
def test_orchestr_config_agrees_with_compose(
    case: str, compose_configs: dict[str, dict[str, Any]]
) -> None:
    directory = DATA / case
    theirs = normalised_compose(compose_configs[case], directory)
    project = load_project(
        LoadOptions(cwd=str(directory), environ=dict(ENV), project_name="compat")
    )
    ours = normalised_orchestr(project, directory)
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        for field in theirs[name]:
            assert ours[name][field] == theirs[name][field], f"services.{name}.{field}"
