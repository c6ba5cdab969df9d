"""Short syntaxes to the long forms `docker compose config` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestr.stack.errors import StackError
from orchestr.stack.normalize import Context, normalize

ENV = {"FROM_ENV": "yes", "HOME": "/home/u"}


def norm(services: dict[str, Any], tmp: str = "/proj", **top: Any) -> dict[str, Any]:
    return normalize({"services": services, **top}, Context("demo", tmp, ENV.get))


def svc(spec: dict[str, Any], **top: Any) -> dict[str, Any]:
    return dict(norm({"s": spec}, **top)["services"]["s"])


def test_command_strings_are_split_like_a_shell() -> None:
    s = svc({"command": "sh -c 'echo \"a b\"' x", "entrypoint": "/init --flag"})
    assert s["command"] == ["sh", "-c", 'echo "a b"', "x"]
    assert s["entrypoint"] == ["/init", "--flag"]
    with pytest.raises(StackError, match="cannot split"):
        svc({"command": "echo 'unterminated"})


def test_environment_lists_become_mappings_and_bare_names_are_looked_up() -> None:
    s = svc({"environment": ["A=1", "B=", "FROM_ENV", "MISSING", "C=x=y"]})
    assert s["environment"] == {"A": "1", "B": "", "FROM_ENV": "yes", "MISSING": None, "C": "x=y"}
    s = svc({"environment": {"N": 1, "T": True, "F": 1.0, "E": None}})
    assert s["environment"] == {"N": "1", "T": "true", "F": "1", "E": None}


def test_env_file_is_read_relative_to_the_project_and_environment_wins(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("A=from-file\nB=from-file\nREF=${FROM_ENV}\n")
    out = norm({"s": {"env_file": "a.env", "environment": {"B": "explicit"}}}, str(tmp_path))[
        "services"
    ]["s"]
    assert out["environment"] == {"A": "from-file", "B": "explicit", "REF": "yes"}
    assert "env_file" not in out


def test_env_file_optional_and_missing(tmp_path: Path) -> None:
    out = norm({"s": {"env_file": [{"path": "nope.env", "required": False}]}}, str(tmp_path))
    assert out["services"]["s"].get("environment", {}) == {}
    with pytest.raises(StackError) as caught:
        norm({"s": {"env_file": ["nope.env"]}}, str(tmp_path))
    assert caught.value.path == ("services", "s", "env_file", 0)


@pytest.mark.parametrize(
    ("short", "long"),
    [
        ("80", [{"mode": "ingress", "target": 80, "protocol": "tcp"}]),
        (8080, [{"mode": "ingress", "target": 8080, "protocol": "tcp"}]),
        ("8080:80", [{"mode": "ingress", "target": 80, "protocol": "tcp", "published": "8080"}]),
        ("127.0.0.1:53:53/udp", [{"mode": "ingress", "target": 53, "protocol": "udp",
                                  "host_ip": "127.0.0.1", "published": "53"}]),
        ("[::1]:80:80", [{"mode": "ingress", "target": 80, "protocol": "tcp", "host_ip": "::1",
                          "published": "80"}]),
        ("9000-9001:90-91", [
            {"mode": "ingress", "target": 90, "protocol": "tcp", "published": "9000"},
            {"mode": "ingress", "target": 91, "protocol": "tcp", "published": "9001"}]),
        ("8000-8010:80", [{"mode": "ingress", "target": 80, "protocol": "tcp",
                           "published": "8000-8010"}]),
    ],
)  # fmt: skip
def test_ports(short: object, long: list[dict[str, Any]]) -> None:
    assert svc({"ports": [short]})["ports"] == long


def test_long_ports_get_defaults_and_string_published() -> None:
    assert svc({"ports": [{"target": 80, "published": 8080}]})["ports"] == [
        {"target": 80, "published": "8080", "mode": "ingress", "protocol": "tcp"}
    ]


def test_a_bad_port_names_itself_with_a_hint() -> None:
    with pytest.raises(StackError) as caught:
        svc({"ports": ["80", "80:80:80"]})
    assert caught.value.path == ("services", "s", "ports", 1)
    assert "'80:80:80' is not a port mapping" in caught.value.message
    assert caught.value.hint


def test_volumes() -> None:
    s = svc(
        {
            "volumes": [
                "data:/var/lib/data",
                "./conf:/etc/conf:ro",
                "/abs/:/abs/:rw,rshared",
                "~/x:/x",
                "/anon",
                "cache:/cache:nocopy",
            ]
        }
    )
    assert s["volumes"] == [
        {"type": "volume", "source": "data", "target": "/var/lib/data", "volume": {}},
        {"type": "bind", "source": "/proj/conf", "target": "/etc/conf", "read_only": True,
         "bind": {"create_host_path": True}},
        {"type": "bind", "source": "/abs", "target": "/abs",
         "bind": {"create_host_path": True, "propagation": "rshared"}},
        {"type": "bind", "source": "/home/u/x", "target": "/x",
         "bind": {"create_host_path": True}},
        {"type": "volume", "target": "/anon"},
        {"type": "volume", "source": "cache", "target": "/cache", "volume": {"nocopy": True}},
    ]  # fmt: skip
    with pytest.raises(StackError, match="unknown volume mode 'rx'"):
        svc({"volumes": ["a:/b:rx"]})
    with pytest.raises(StackError, match="not an absolute path"):
        svc({"volumes": ["a:b"]})


def test_depends_on_and_networks() -> None:
    s = svc({"depends_on": ["db"]})
    assert s["depends_on"] == {
        "db": {"condition": "service_started", "required": True, "restart": False}
    }
    assert s["networks"] == {"default": None}
    s = svc({"depends_on": {"db": {"condition": "service_healthy"}}, "networks": ["front"]})
    assert s["depends_on"]["db"]["condition"] == "service_healthy"
    assert s["networks"] == {"front": None}
    assert "networks" not in svc({"network_mode": "host"})
    with pytest.raises(StackError, match="cannot be combined"):
        svc({"network_mode": "host", "networks": ["a"]})


def test_healthcheck() -> None:
    s = svc({"healthcheck": {"test": "curl -f localhost", "interval": "90s", "retries": 2}})
    assert s["healthcheck"] == {"test": ["CMD-SHELL", "curl -f localhost"], "interval": "1m30s",
                                "retries": 2}  # fmt: skip
    assert svc({"healthcheck": {"disable": True}})["healthcheck"] == {"test": ["NONE"]}
    with pytest.raises(StackError, match="CMD, CMD-SHELL or NONE"):
        svc({"healthcheck": {"test": ["curl"]}})


def test_sizes_durations_ulimits_hosts_secrets_build() -> None:
    s = svc(
        {
            "mem_limit": "512m",
            "stop_grace_period": "1m",
            "ulimits": {"nofile": {"soft": 1, "hard": 2}, "nproc": 65535},
            "extra_hosts": ["a:1.2.3.4", "b=::1", "c:[::2]"],
            "secrets": ["token", {"source": "key", "target": "k"}],
            "build": "./app",
            "cpus": "0.5",
        }
    )
    assert s["mem_limit"] == 512 << 20
    assert s["stop_grace_period"] == "1m0s"
    assert s["ulimits"] == {"nofile": {"soft": 1, "hard": 2},
                            "nproc": {"soft": 65535, "hard": 65535}}  # fmt: skip
    assert s["extra_hosts"] == ["a=1.2.3.4", "b=::1", "c=::2"]
    assert s["secrets"] == [{"source": "token"}, {"source": "key", "target": "k"}]
    assert s["build"] == {"context": "/proj/app", "dockerfile": "Dockerfile"}
    assert s["cpus"] == 0.5


def test_top_level_names_and_the_default_network() -> None:
    out = norm(
        {"s": {}},
        networks={"front": None, "ext": {"external": True}, "named": {"name": "custom"}},
        volumes={"data": {}, "old": {"external": {"name": "legacy"}}},
        secrets={"token": {"file": "./token.txt"}},
    )
    assert out["networks"] == {
        "front": {"name": "demo_front"},
        "ext": {"external": True, "name": "ext"},
        "named": {"name": "custom"},
        "default": {"name": "demo_default"},
    }
    assert out["volumes"] == {"data": {"name": "demo_data"},
                              "old": {"external": True, "name": "legacy"}}  # fmt: skip
    assert out["secrets"]["token"] == {"file": "/proj/token.txt", "name": "demo_token"}
