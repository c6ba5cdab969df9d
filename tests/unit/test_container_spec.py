"""Create bodies into container specs, specs into OCI configs, restart policies."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.containers import restart
from agent.containers.spec import (
    RestartPolicy,
    SpecError,
    capabilities,
    check_name,
    oci_config,
    parse_create,
    parse_size,
)

# What `docker run busybox echo hi` sends (the fields that matter, most of them zero).
DOCKER_RUN = {
    "Hostname": "",
    "User": "",
    "AttachStdout": True,
    "AttachStderr": True,
    "Tty": False,
    "OpenStdin": False,
    "Env": [],
    "Cmd": ["echo", "hi"],
    "Image": "busybox",
    "Volumes": {},
    "Entrypoint": None,
    "Labels": {},
    "HostConfig": {
        "Binds": None,
        "LogConfig": {"Type": "", "Config": {}},
        "NetworkMode": "default",
        "PortBindings": {},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False,
        "CapAdd": None,
        "CapDrop": None,
        "Privileged": False,
        "Memory": 0,
        "NanoCpus": 0,
        "PidsLimit": None,
        "Devices": [],
    },
}


def test_a_plain_docker_run_body_is_accepted() -> None:
    spec = parse_create(DOCKER_RUN)
    assert spec.image == "busybox" and spec.cmd == ["echo", "hi"]
    assert spec.restart == RestartPolicy("no", 0)
    assert spec.network_mode == "default" and spec.mounts == ()


def test_network_options_are_read() -> None:
    spec = parse_create(
        {
            "Image": "x",
            "HostConfig": {
                "NetworkMode": "n1",
                "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}], "81/tcp": None},
                "PublishAllPorts": True,
                "Dns": ["10.0.0.2"],
                "ExtraHosts": ["db:10.0.0.3"],
            },
            "NetworkingConfig": {"EndpointsConfig": {"n1": {"Aliases": ["web"]}}},
        }
    )
    assert spec.network_mode == "n1" and spec.publish_all
    assert spec.port_bindings == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert spec.dns == ("10.0.0.2",) and spec.extra_hosts == ("db:10.0.0.3",)
    assert spec.endpoints == {"n1": {"Aliases": ["web"]}}


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ({"Privileged": True}, "privileged containers are not supported yet"),
        ({"PortBindings": {"80/tcp": "8080"}}, "HostConfig.PortBindings: expected an object"),
        (
            {"NetworkMode": "container:a", "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}},
            "port publishing and the container type network mode",
        ),
        ({"NetworkMode": "container:"}, "container: needs a container name"),
        ({"RestartPolicy": {"Name": "sometimes"}}, "invalid restart policy"),
        ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}}, "maximum retry count"),
        ({"AutoRemove": True, "RestartPolicy": {"Name": "always"}}, "AutoRemove"),
        ({"Binds": ["/src"]}, "is not SRC:DEST"),
        ({"Binds": ["/src:rel"]}, "is not an absolute path"),
        ({"Binds": ["/a:/x", "vol:/x"]}, "Duplicate mount point: /x"),
        ({"LogConfig": {"Type": "syslog"}}, "syslog log driver"),
        ({"SecurityOpt": ["apparmor=x"]}, "not supported yet"),
        ({"CapAdd": ["not a cap"]}, "invalid capability"),
    ],
)
def test_refusals_name_the_field(host: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_create({**DOCKER_RUN, "HostConfig": {**DOCKER_RUN["HostConfig"], **host}})  # type: ignore[dict-item]


def test_mounts_binds_volumes_tmpfs_and_log_options() -> None:
    spec = parse_create(
        {
            "Image": "busybox",
            "HostConfig": {
                "Binds": ["/srv/data:/data:ro", "named:/cache"],
                "Mounts": [
                    {"Type": "tmpfs", "Target": "/run", "TmpfsOptions": {"SizeBytes": 1024}}
                ],
                "Tmpfs": {"/tmp": "size=64m"},
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
            },
        }
    )
    kinds = [(m.type, m.source, m.target, m.read_only, m.options) for m in spec.mounts]
    assert kinds == [
        ("bind", "/srv/data", "/data", True, ()),
        ("volume", "named", "/cache", False, ()),
        ("tmpfs", "", "/run", False, ("size=1024",)),
        ("tmpfs", "", "/tmp", False, ("size=64m",)),
    ]
    assert spec.log_max_size == 10 << 20 and spec.log_max_files == 3
    assert spec.restart == RestartPolicy("on-failure", 2)


def test_names_and_sizes() -> None:
    assert check_name("/web_1") == "web_1"
    assert check_name("w") == "w"  # one character: allowed here (Docker needs two)
    with pytest.raises(SpecError, match="Invalid container name"):
        check_name("-a")
    assert parse_size("512k", "x") == 512 << 10 and parse_size("1g", "x") == 1 << 30


def test_capabilities_follow_docker() -> None:
    base = parse_create({"Image": "busybox"})
    assert "CAP_NET_RAW" in capabilities(base) and "CAP_SYS_ADMIN" not in capabilities(base)
    spec = parse_create(
        {"Image": "b", "HostConfig": {"CapAdd": ["sys_admin"], "CapDrop": ["NET_RAW"]}}
    )
    caps = capabilities(spec)
    assert "CAP_SYS_ADMIN" in caps and "CAP_NET_RAW" not in caps
    only = parse_create({"Image": "b", "HostConfig": {"CapDrop": ["ALL"], "CapAdd": ["CHOWN"]}})
    assert capabilities(only) == ["CAP_CHOWN"]


def test_oci_config_from_image_and_spec(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nweb:x:33:33::/:/bin/sh\n")
    image = {"config": {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "WorkingDir": "/srv"}}
    spec = parse_create(
        {
            "Image": "x",
            "Cmd": ["echo", "hi"],
            "Env": ["A=2"],
            "User": "web",
            "HostConfig": {"Memory": 64 << 20, "NanoCpus": 500_000_000, "PidsLimit": 50},
        }
    )
    config = oci_config(
        spec, image, str(tmp_path), hostname="abc", mounts=[], cgroups_path="/orchestr/x"
    )
    process = config["process"]
    assert process["args"] == ["echo", "hi"]
    assert (
        "A=2" in process["env"] and "A=1" not in process["env"] and "HOSTNAME=abc" in process["env"]
    )
    assert process["cwd"] == "/srv" and process["user"]["uid"] == 33
    resources = config["linux"]["resources"]
    assert resources["memory"]["limit"] == 64 << 20
    assert resources["cpu"]["quota"] == 50_000 and resources["cpu"]["period"] == 100_000
    assert resources["pids"]["limit"] == 50
    assert config["linux"]["cgroupsPath"] == "/orchestr/x"
    assert config["hostname"] == "abc" and "seccomp" in config["linux"]
    host = parse_create({"Image": "x", "HostConfig": {"NetworkMode": "host"}})
    host_config = oci_config(
        host, image, str(tmp_path), hostname="abc", mounts=[], cgroups_path="/o/y"
    )
    kinds = {n["type"] for n in host_config["linux"]["namespaces"]}
    assert "network" not in kinds and "uts" not in kinds


def test_restart_policies() -> None:
    always = RestartPolicy("always")
    on_failure = RestartPolicy("on-failure", 2)
    assert restart.should_restart(always, 0, 5, manually_stopped=False)
    assert not restart.should_restart(always, 1, 0, manually_stopped=True)
    assert restart.should_restart(on_failure, 1, 1, manually_stopped=False)
    assert not restart.should_restart(on_failure, 1, 2, manually_stopped=False)
    assert not restart.should_restart(on_failure, 0, 0, manually_stopped=False)
    assert not restart.should_restart(RestartPolicy("no"), 1, 0, manually_stopped=False)
    assert restart.start_at_boot(always, manually_stopped=True)
    assert not restart.start_at_boot(RestartPolicy("unless-stopped"), manually_stopped=True)
    delays = [0.0]
    for _ in range(12):
        delays.append(restart.next_delay(delays[-1], ran_for=0.5))
    assert delays[1:4] == [0.1, 0.2, 0.4] and delays[-1] == 60.0
    assert restart.next_delay(60.0, ran_for=11) == 0.1
