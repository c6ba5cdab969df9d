"""A Compose service as Engine API bodies, with Compose's names and labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestr.compose import convert
from orchestr.errors import NotSupportedError
from orchestr.stack.model import Project
from orchestr.stack.normalize import Context, normalize


def project(services: dict[str, Any], tmp: str = "/proj", **top: Any) -> Project:
    doc = normalize({"services": services, **top}, Context("demo", tmp, {}.get))
    return Project.from_document(doc, working_dir=tmp)


def test_container_body_of_a_typical_service() -> None:
    p = project(
        {
            "web": {
                "image": "busybox",
                "command": "httpd -f",
                "environment": ["A=1", "UNSET"],
                "ports": ["8080:80"],
                "expose": [9000],
                "volumes": ["data:/data", "./html:/www:ro"],
                "restart": "on-failure:3",
                "healthcheck": {"test": "true", "interval": "2s"},
                "stop_grace_period": "20s",
                "networks": {"front": {"aliases": ["www"]}, "back": None},
                "init": True,
                "ulimits": {"nofile": 1024},
                "labels": {"team": "a"},
            }
        },
        networks={"front": {}, "back": {}},
        volumes={"data": {}},
    )
    web = p.services["web"]
    body = convert.container_body(p, web, 1, "abc")
    assert body["Image"] == "busybox"
    assert body["Cmd"] == ["httpd", "-f"]
    assert body["Env"] == ["A=1"]
    assert body["ExposedPorts"] == {"80/tcp": {}, "9000/tcp": {}}
    host = body["HostConfig"]
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert host["Binds"] == ["/proj/html:/www:ro"]
    assert host["Mounts"] == [
        {"Type": "volume", "Target": "/data", "ReadOnly": False, "Source": "demo_data"}
    ]
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host["Init"] is True
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 1024}]
    assert body["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 2_000_000_000}
    assert body["StopTimeout"] == 20
    assert host["NetworkMode"] == "demo_back"  # same priority: by key
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"demo_back": {"Aliases": ["web"]}}}
    assert convert.service_networks(p, web) == [("back", "demo_back"), ("front", "demo_front")]
    assert convert.endpoint_config(web, "front", "demo-web-1") == {"Aliases": ["web", "www"]}
    labels = body["Labels"]
    assert labels["team"] == "a"
    assert labels[convert.LABEL_PROJECT] == "demo"
    assert labels[convert.LABEL_SERVICE] == "web"
    assert labels[convert.LABEL_NUMBER] == "1"
    assert labels[convert.LABEL_CONFIG_HASH] == "abc"
    assert convert.container_name("demo", web, 2) == "demo-web-2"


def test_unsupported_attributes_are_refused_by_name() -> None:
    p = project({"s": {"image": "x", "privileged": True, "devices": ["/dev/fuse"]}})
    with pytest.raises(NotSupportedError, match="devices, privileged not supported"):
        convert.container_body(p, p.services["s"], 1, "h")


def test_config_hash_ignores_scale_and_sees_real_changes() -> None:
    a = project({"s": {"image": "x", "scale": 1}}).services["s"]
    b = project({"s": {"image": "x", "scale": 5}}).services["s"]
    c = project({"s": {"image": "x", "environment": {"A": "1"}}}).services["s"]
    assert convert.config_hash(a) == convert.config_hash(b)
    assert convert.config_hash(a) != convert.config_hash(c)
    assert convert.config_hash(a, {"/run/secrets/t": b"1"}) != convert.config_hash(
        a, {"/run/secrets/t": b"2"}
    )


def test_file_secrets_are_read_only_binds(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret")
    p = project(
        {"s": {"image": "x", "secrets": ["token"], "configs": [{"source": "conf",
                                                               "target": "/etc/app.conf"}]}},
        str(tmp_path),
        secrets={"token": {"file": "./token"}},
        configs={"conf": {"file": "./token"}},
    )  # fmt: skip
    s = p.services["s"]
    assert convert.container_body(p, s, 1, "h")["HostConfig"]["Binds"] == [
        f"{tmp_path}/token:/run/secrets/token:ro",
        f"{tmp_path}/token:/etc/app.conf:ro",
    ]
    assert convert.file_contents(p, s) == {"/run/secrets/token": b"s3cret",
                                           "/etc/app.conf": b"s3cret"}  # fmt: skip
    env = project({"s": {"image": "x", "secrets": ["e"]}}, secrets={"e": {"environment": "E"}})
    with pytest.raises(NotSupportedError, match="only file-based"):
        convert.container_body(env, env.services["s"], 1, "h")


def test_the_orchestr_extension_becomes_the_health_label() -> None:
    p = project({"s": {"image": "x", "x-orchestr": {"health_on_failure": "restart"}}})
    body = convert.container_body(p, p.services["s"], 1, "h")
    assert body["Labels"]["org.orchestr.health.on-failure"] == "restart"
