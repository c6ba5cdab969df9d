"""Compose files as Swarm service specs, as `docker stack deploy` makes them.

Each case is a small compose file loaded through the real loader; the expectations follow
docker/cli's cli/compose/convert (see docs/design/deploy.md for the deviations).
"""

from __future__ import annotations

import base64
import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest

from orchestr.compose import deploy
from orchestr.stack.errors import StackError
from orchestr.stack.loader import LoadOptions, load_project
from orchestr.stack.model import Project

S = 1_000_000_000
NS = {deploy.LABEL_NAMESPACE: "demo"}


def load(tmp: Path, text: str, environ: dict[str, str] | None = None) -> Project:
    path = tmp / "compose.yaml"
    path.write_text("name: demo\n" + textwrap.dedent(text))
    return load_project(LoadOptions(files=[str(path)], cwd=str(tmp), environ=environ or {}))


def spec(tmp: Path, text: str, service: str | None = None) -> dict[str, Any]:
    project = load(tmp, text)
    specs = {s["Name"]: s for s in deploy.service_specs(project)}
    if service is None:
        assert len(specs) == 1
        return next(iter(specs.values()))
    return specs[f"demo_{service}"]


def container(tmp: Path, text: str) -> dict[str, Any]:
    result: dict[str, Any] = spec(tmp, text)["TaskTemplate"]["ContainerSpec"]
    return result


def refused(tmp: Path, text: str) -> str:
    with pytest.raises(StackError) as caught:
        deploy.stack_specs(load(tmp, text), read=lambda _: b"")
    return str(caught.value)


# -- the service and its container --------------------------------------------------------


def test_a_minimal_service_leaves_out_what_docker_cli_leaves_out(tmp_path: Path) -> None:
    assert spec(tmp_path, "services: {web: {image: nginx}}") == {
        "Name": "demo_web",
        "Labels": {**NS, deploy.LABEL_IMAGE: "nginx"},
        "TaskTemplate": {
            "ContainerSpec": {"Image": "nginx", "Labels": NS},
            "Networks": [{"Target": "demo_default", "Aliases": ["web"]}],
        },
        "Mode": {"Replicated": {}},
    }


def test_entrypoint_is_the_command_and_command_the_args(tmp_path: Path) -> None:
    c = container(
        tmp_path,
        """
        services:
          s: {image: x, entrypoint: /bin/sh -c, command: ["echo", "hi there"]}
        """,
    )
    assert c["Command"] == ["/bin/sh", "-c"]
    assert c["Args"] == ["echo", "hi there"]


def test_environment_is_sorted_and_unset_variables_are_left_out(tmp_path: Path) -> None:
    c = container(
        tmp_path,
        """
        services:
          s:
            image: x
            environment: {Z: "1", A_B: two, A: "", UNSET: null, "B": "x=y"}
        """,
    )
    assert c["Env"] == ["A=", "A_B=two", "B=x=y", "Z=1"]


def test_scalar_container_fields(tmp_path: Path) -> None:
    c = container(
        tmp_path,
        """
        services:
          s:
            image: x
            working_dir: /app
            user: "1000:1000"
            hostname: box
            stop_signal: SIGINT
            stop_grace_period: 1m30s
            tty: true
            stdin_open: true
            read_only: true
            init: false
            group_add: [wheel, 44]
            labels: {team: a}
        """,
    )
    assert c == {
        "Image": "x",
        "Labels": {"team": "a", **NS},
        "Dir": "/app",
        "User": "1000:1000",
        "Hostname": "box",
        "Groups": ["wheel", "44"],
        "StopSignal": "SIGINT",
        "StopGracePeriod": 90 * S,
        "TTY": True,
        "OpenStdin": True,
        "ReadOnly": True,
        "Init": False,
    }


def test_healthcheck_durations_are_nanoseconds(tmp_path: Path) -> None:
    c = container(
        tmp_path,
        """
        services:
          s:
            image: x
            healthcheck:
              test: curl -f localhost
              interval: 10s
              timeout: 500ms
              retries: 4
              start_period: 1m
              start_interval: 2s
        """,
    )
    assert c["Healthcheck"] == {
        "Test": ["CMD-SHELL", "curl -f localhost"],
        "Interval": 10 * S,
        "Timeout": S // 2,
        "StartPeriod": 60 * S,
        "StartInterval": 2 * S,
        "Retries": 4,
    }
    disabled = container(tmp_path, "services: {s: {image: x, healthcheck: {disable: true}}}")
    assert disabled["Healthcheck"] == {"Test": ["NONE"]}


def test_capabilities_are_normalised_and_adding_wins(tmp_path: Path) -> None:
    c = container(
        tmp_path,
        """
        services:
          s:
            image: x
            cap_add: [net_admin, CAP_SYS_TIME, NET_ADMIN]
            cap_drop: [NET_ADMIN, chown]
        """,
    )
    assert c["CapabilityAdd"] == ["CAP_NET_ADMIN", "CAP_SYS_TIME"]
    assert c["CapabilityDrop"] == ["CAP_CHOWN"]
    assert deploy.effective_capabilities(["all", "kill"], ["ALL"]) == (["ALL"], [])
    assert deploy.effective_capabilities([], ["all", "chown"]) == ([], ["ALL"])


def test_ulimits_sysctls_hosts_and_dns(tmp_path: Path) -> None:
    c = container(
        tmp_path,
        """
        services:
          s:
            image: x
            ulimits: {nproc: 65535, nofile: {soft: 1024, hard: 4096}}
            sysctls: [net.core.somaxconn=1024]
            extra_hosts: ["db:10.0.0.5", "v6=::1"]
            dns: 8.8.8.8
            dns_search: [example.com]
            dns_opt: [ndots:2]
        """,
    )
    assert c["Ulimits"] == [
        {"Name": "nofile", "Soft": 1024, "Hard": 4096},
        {"Name": "nproc", "Soft": 65535, "Hard": 65535},
    ]
    assert c["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert c["Hosts"] == ["10.0.0.5 db", "::1 v6"]
    assert c["DNSConfig"] == {
        "Nameservers": ["8.8.8.8"],
        "Search": ["example.com"],
        "Options": ["ndots:2"],
    }


def test_service_and_container_labels_both_carry_the_namespace(tmp_path: Path) -> None:
    s = spec(
        tmp_path,
        """
        services:
          s:
            image: registry.example/app:1.2
            labels: [on.container=1]
            deploy: {labels: {on.service: "2"}}
        """,
    )
    assert s["Labels"] == {
        "on.service": "2",
        deploy.LABEL_NAMESPACE: "demo",
        deploy.LABEL_IMAGE: "registry.example/app:1.2",
    }
    assert s["TaskTemplate"]["ContainerSpec"]["Labels"] == {"on.container": "1", **NS}


def test_logging_becomes_the_log_driver(tmp_path: Path) -> None:
    s = spec(
        tmp_path,
        "services: {s: {image: x, logging: {driver: syslog, options: {tag: app}}}}",
    )
    assert s["TaskTemplate"]["LogDriver"] == {"Name": "syslog", "Options": {"tag": "app"}}


# -- mounts -------------------------------------------------------------------------------


MOUNTS = """
        services:
          s:
            image: x
            volumes:
              - data:/data
              - /scratch
              - ./conf:/etc/app:ro
              - type: bind
                source: /var/log
                target: /logs
                bind: {propagation: rslave}
              - type: volume
                source: shared
                target: /shared
                volume: {nocopy: true}
              - type: volume
                source: named
                target: /named
              - type: tmpfs
                target: /cache
                tmpfs: {size: 64m, mode: 0o1777}
            tmpfs: [/run, "/tmp:size=1k,noexec"]
        volumes:
          data: {driver: local, driver_opts: {type: nfs}, labels: {backup: daily}}
          shared: {external: true}
          named: {name: fixed-name}
        """


def test_mounts(tmp_path: Path) -> None:
    assert container(tmp_path, MOUNTS)["Mounts"] == [
        {
            "Type": "volume",
            "Target": "/data",
            "Source": "demo_data",
            "VolumeOptions": {
                "Labels": {"backup": "daily", **NS},
                "DriverConfig": {"Name": "local", "Options": {"type": "nfs"}},
            },
        },
        {"Type": "volume", "Target": "/scratch"},
        {"Type": "bind", "Target": "/etc/app", "ReadOnly": True, "Source": f"{tmp_path}/conf"},
        {
            "Type": "bind",
            "Target": "/logs",
            "Source": "/var/log",
            "BindOptions": {"Propagation": "rslave"},
        },
        {
            "Type": "volume",
            "Target": "/shared",
            "Source": "shared",
            "VolumeOptions": {"NoCopy": True},
        },
        {
            "Type": "volume",
            "Target": "/named",
            "Source": "fixed-name",
            "VolumeOptions": {"Labels": NS},
        },
        {
            "Type": "tmpfs",
            "Target": "/cache",
            "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1777},
        },
        {"Type": "tmpfs", "Target": "/run"},
        {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 1024}},
    ]
    assert deploy.warnings(load(tmp_path, MOUNTS)) == [
        "service 's': Ignoring unsupported options: tmpfs[1].noexec"
    ]


def test_mount_types_swarm_cannot_run_are_refused(tmp_path: Path) -> None:
    text = """
        services:
          s:
            image: x
            volumes: [{type: npipe, source: //./pipe/docker_engine, target: //./pipe/x}]
        """
    assert "services.s.volumes[0]: npipe mounts are not supported" in refused(tmp_path, text)


# -- secrets and configs ------------------------------------------------------------------


def test_secret_and_config_references(tmp_path: Path) -> None:
    c = container(
        tmp_path,
        """
        services:
          s:
            image: x
            secrets:
              - zeta
              - {source: alpha, target: pw, uid: "100", gid: "101", mode: 0o400}
            configs: [{source: conf, target: /etc/app.conf}, plain]
        secrets:
          zeta: {external: true}
          alpha: {file: ./a, name: global-alpha}
        configs:
          conf: {content: "x = 1"}
          plain: {file: ./p}
        """,
    )
    assert c["Secrets"] == [
        {
            "File": {"Name": "pw", "UID": "100", "GID": "101", "Mode": 0o400},
            "SecretID": "",
            "SecretName": "global-alpha",
        },
        {
            "File": {"Name": "zeta", "UID": "0", "GID": "0", "Mode": 0o444},
            "SecretID": "",
            "SecretName": "zeta",
        },
    ]
    assert c["Configs"] == [
        {
            "File": {"Name": "/etc/app.conf", "UID": "0", "GID": "0", "Mode": 0o444},
            "ConfigID": "",
            "ConfigName": "demo_conf",
        },
        {
            "File": {"Name": "plain", "UID": "0", "GID": "0", "Mode": 0o444},
            "ConfigID": "",
            "ConfigName": "demo_plain",
        },
    ]


def test_secret_and_config_specs(tmp_path: Path) -> None:
    (tmp_path / "token").write_bytes(b"s3cret\n")
    project = load(
        tmp_path,
        """
        services: {s: {image: x}}
        secrets:
          token: {file: ./token, labels: {kind: api}}
          fromenv: {environment: TOKEN}
          ext: {external: true}
        configs:
          inline: {content: "a=1", name: app-config}
        """,
    )
    secrets = deploy.secret_specs(project, environ={"TOKEN": "t0k"})
    assert secrets == [
        {"Name": "demo_fromenv", "Labels": NS, "Data": base64.b64encode(b"t0k").decode()},
        {
            "Name": "demo_token",
            "Labels": {"kind": "api", **NS},
            "Data": base64.b64encode(b"s3cret\n").decode(),
        },
    ]
    assert deploy.config_specs(project) == [
        {"Name": "app-config", "Labels": NS, "Data": base64.b64encode(b"a=1").decode()}
    ]
    with pytest.raises(StackError, match=r"secrets\.fromenv\.environment: .*TOKEN is not set"):
        deploy.secret_specs(project, environ={})


# -- networks -----------------------------------------------------------------------------


def test_networks_aliases_and_the_default_network(tmp_path: Path) -> None:
    project = load(
        tmp_path,
        """
        services:
          a:
            image: x
            networks:
              front: {aliases: [www, site]}
              back:
              outside:
          b: {image: x}
          c: {image: x, network_mode: host}
        networks:
          front: {}
          back: {name: backbone, driver: bridge, attachable: true, labels: {z: "1"}}
          outside: {external: true, name: shared-net}
          unused: {}
        """,
    )
    specs = {s["Name"]: s for s in deploy.service_specs(project)}
    assert specs["demo_a"]["TaskTemplate"]["Networks"] == [
        {"Target": "backbone", "Aliases": ["a"]},
        {"Target": "demo_front", "Aliases": ["www", "site", "a"]},
        {"Target": "shared-net", "Aliases": ["a"]},
    ]
    default = [{"Target": "demo_default", "Aliases": ["b"]}]
    assert specs["demo_b"]["TaskTemplate"]["Networks"] == default
    # swarm ignores network_mode (with a warning) and joins the default network
    assert specs["demo_c"]["TaskTemplate"]["Networks"][0]["Target"] == "demo_default"
    assert deploy.warnings(project) == ["service 'c': Ignoring unsupported options: network_mode"]
    assert deploy.network_specs(project) == [
        {
            "Name": "backbone",
            "CheckDuplicate": True,
            "Driver": "bridge",
            "Internal": False,
            "Attachable": True,
            "Options": {},
            "Labels": {"z": "1", **NS},
        },
        {
            "Name": "demo_default",
            "CheckDuplicate": True,
            "Driver": "overlay",
            "Internal": False,
            "Attachable": False,
            "Options": {},
            "Labels": NS,
        },
        {
            "Name": "demo_front",
            "CheckDuplicate": True,
            "Driver": "overlay",
            "Internal": False,
            "Attachable": False,
            "Options": {},
            "Labels": NS,
        },
    ]
    assert deploy.external_networks(project) == ["shared-net"]


def test_network_ipam_and_options(tmp_path: Path) -> None:
    project = load(
        tmp_path,
        """
        services: {s: {image: x, networks: [n]}}
        networks:
          n:
            internal: true
            enable_ipv6: true
            driver_opts: {encrypted: ""}
            ipam:
              config: [{subnet: 10.9.0.0/24, gateway: 10.9.0.1}]
        """,
    )
    (body,) = deploy.network_specs(project)
    assert body["Internal"] is True
    assert body["EnableIPv6"] is True
    assert body["Options"] == {"encrypted": ""}
    assert body["IPAM"] == {
        "Driver": "default",
        "Config": [{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"}],
    }


def test_a_fixed_address_on_a_network_is_ignored_with_a_warning(tmp_path: Path) -> None:
    project = load(
        tmp_path,
        "services: {s: {image: x, networks: {n: {ipv4_address: 10.1.0.9}}}}\nnetworks: {n: {}}",
    )
    assert deploy.warnings(project) == [
        "service 's': Ignoring unsupported options: networks.n.ipv4_address"
    ]


# -- ports and the endpoint ---------------------------------------------------------------


def test_ports_are_sorted_as_docker_cli_sorts_them(tmp_path: Path) -> None:
    s = spec(
        tmp_path,
        """
        services:
          s:
            image: x
            ports:
              - "9000:90/udp"
              - 8080:80
              - target: 443
                published: 8443
                mode: host
                name: https
              - 5000
        """,
    )
    assert s["EndpointSpec"] == {
        "Ports": [
            {"Protocol": "tcp", "TargetPort": 5000, "PublishMode": "ingress"},
            {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"},
            {
                "Protocol": "tcp",
                "TargetPort": 443,
                "PublishedPort": 8443,
                "PublishMode": "host",
                "Name": "https",
            },
            {"Protocol": "udp", "TargetPort": 90, "PublishedPort": 9000, "PublishMode": "ingress"},
        ]
    }


def test_port_ranges_expand_to_single_ports(tmp_path: Path) -> None:
    s = spec(tmp_path, "services: {s: {image: x, ports: ['8000-8001:80-81']}}")
    assert [(p["PublishedPort"], p["TargetPort"]) for p in s["EndpointSpec"]["Ports"]] == [
        (8000, 80),
        (8001, 81),
    ]


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ("['127.0.0.1:80:80']", "services.s.ports[0].host_ip: host_ip 127.0.0.1: swarm publishes"),
        ("[{target: 80, published: 8000-8010}]", "services.s.ports[0].published: published"),
    ],
)
def test_ports_swarm_cannot_publish_are_refused(tmp_path: Path, ports: str, message: str) -> None:
    assert message in refused(tmp_path, f"services: {{s: {{image: x, ports: {ports}}}}}")


def test_endpoint_mode(tmp_path: Path) -> None:
    s = spec(
        tmp_path,
        """
        services:
          s:
            image: x
            ports: [{target: 80, published: 80, mode: host}]
            deploy: {endpoint_mode: DNSRR}
        """,
    )
    assert s["EndpointSpec"]["Mode"] == "dnsrr"
    text = "services: {s: {image: x, ports: ['80:80'], deploy: {endpoint_mode: dnsrr}}}"
    assert "cannot be used with endpoint_mode dnsrr" in refused(tmp_path, text)
    text = "services: {s: {image: x, deploy: {endpoint_mode: anycast}}}"
    assert "services.s.deploy.endpoint_mode: unknown endpoint_mode 'anycast'" in refused(
        tmp_path, text
    )


# -- mode, placement, resources -----------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "mode"),
    [
        ("deploy: {replicas: 3}", {"Replicated": {"Replicas": 3}}),
        ("deploy: {replicas: 0}", {"Replicated": {"Replicas": 0}}),
        ("scale: 2", {"Replicated": {"Replicas": 2}}),
        ("{scale: 2, deploy: {replicas: 2}}", {"Replicated": {"Replicas": 2}}),
        ("deploy: {mode: replicated}", {"Replicated": {}}),
        ("deploy: {mode: global}", {"Global": {}}),
        ("deploy: {mode: global-job}", {"GlobalJob": {}}),
        (
            "deploy: {mode: replicated-job, replicas: 4}",
            {"ReplicatedJob": {"MaxConcurrent": 4, "TotalCompletions": 4}},
        ),
    ],
)
def test_mode(tmp_path: Path, service: str, mode: dict[str, Any]) -> None:
    body = service[1:-1] if service.startswith("{") else service
    assert spec(tmp_path, f"services: {{s: {{image: x, {body}}}}}")["Mode"] == mode


@pytest.mark.parametrize(
    ("deploy_", "message"),
    [
        ("deploy: {mode: global, replicas: 2}", "services.s.deploy.replicas: replicas can only"),
        ("deploy: {mode: daemonset}", "services.s.deploy.mode: unknown mode 'daemonset'"),
        ("scale: 1, deploy: {replicas: 2}", "services.s.scale: scale and deploy.replicas differ"),
        (
            "deploy: {mode: replicated-job, update_config: {parallelism: 2}}",
            "services.s.deploy.update_config: update and rollback configuration is not",
        ),
    ],
)
def test_wrong_modes_are_refused(tmp_path: Path, deploy_: str, message: str) -> None:
    assert message in refused(tmp_path, f"services: {{s: {{image: x, {deploy_}}}}}")


def test_placement(tmp_path: Path) -> None:
    s = spec(
        tmp_path,
        """
        services:
          s:
            image: x
            deploy:
              placement:
                constraints: [node.role == manager, node.labels.ssd == true]
                preferences: [spread: node.labels.zone, spread: node.labels.rack]
                max_replicas_per_node: 1
        """,
    )
    assert s["TaskTemplate"]["Placement"] == {
        "Constraints": ["node.role == manager", "node.labels.ssd == true"],
        "Preferences": [
            {"Spread": {"SpreadDescriptor": "node.labels.zone"}},
            {"Spread": {"SpreadDescriptor": "node.labels.rack"}},
        ],
        "MaxReplicas": 1,
    }


def test_resources(tmp_path: Path) -> None:
    s = spec(
        tmp_path,
        """
        services:
          s:
            image: x
            deploy:
              resources:
                limits: {cpus: "1.5", memory: 1g, pids: 100}
                reservations:
                  cpus: 0.25
                  memory: 512M
                  generic_resources: [{discrete_resource_spec: {kind: gpu, value: 2}}]
        """,
    )
    assert s["TaskTemplate"]["Resources"] == {
        "Limits": {"NanoCPUs": 1_500_000_000, "MemoryBytes": 1 << 30, "Pids": 100},
        "Reservations": {
            "NanoCPUs": 250_000_000,
            "MemoryBytes": 512 << 20,
            "GenericResources": [{"DiscreteResourceSpec": {"Kind": "gpu", "Value": 2}}],
        },
    }


def test_service_level_limits_stand_in_for_deploy_ones(tmp_path: Path) -> None:
    s = spec(
        tmp_path,
        "services: {s: {image: x, cpus: 0.5, mem_limit: 64m, pids_limit: 10,"
        " mem_reservation: 32m}}",
    )
    assert s["TaskTemplate"]["Resources"] == {
        "Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 64 << 20, "Pids": 10},
        "Reservations": {"MemoryBytes": 32 << 20},
    }
    text = "services: {s: {image: x, cpus: 2, deploy: {resources: {limits: {cpus: '1'}}}}}"
    assert "services.s.cpus: differs from deploy.resources" in refused(tmp_path, text)


def test_cpus_must_be_whole_nanocpus(tmp_path: Path) -> None:
    assert deploy.nano_cpus("0.000000001") == 1
    assert deploy.nano_cpus(2) == 2 * S
    text = "services: {s: {image: x, deploy: {resources: {limits: {cpus: '0.0000000001'}}}}}"
    assert "value is too precise" in refused(tmp_path, text)


# -- restart policy -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "policy"),
    [
        ("'no'", {"Condition": "none"}),
        ("always", {"Condition": "any"}),
        ("unless-stopped", {"Condition": "any"}),
        ("on-failure", {"Condition": "on-failure"}),
        ("on-failure:0", {"Condition": "on-failure"}),
        ("on-failure:3", {"Condition": "on-failure", "MaxAttempts": 3}),
    ],
)
def test_compose_restart_becomes_a_restart_policy(
    tmp_path: Path, restart: str, policy: dict[str, Any]
) -> None:
    s = spec(tmp_path, f"services: {{s: {{image: x, restart: {restart}}}}}")
    assert s["TaskTemplate"]["RestartPolicy"] == policy
    assert (
        deploy.warnings(load(tmp_path, f"services: {{s: {{image: x, restart: {restart}}}}}")) == []
    )


@pytest.mark.parametrize(
    ("restart", "message"),
    [
        ("always:3", "a maximum retry count can only be used with on-failure"),
        ("on-failure:x", "'x' is not a whole number"),
        ("sometimes", "unknown restart policy 'sometimes'"),
    ],
)
def test_wrong_restart_values_are_refused(tmp_path: Path, restart: str, message: str) -> None:
    text = f"services: {{s: {{image: x, restart: '{restart}'}}}}"
    assert f"services.s.restart: {message}" in refused(tmp_path, text)


def test_deploy_restart_policy_wins_over_restart(tmp_path: Path) -> None:
    text = """
        services:
          s:
            image: x
            restart: always
            deploy:
              restart_policy: {condition: on-failure, delay: 10s, max_attempts: 0, window: 1m}
        """
    s = spec(tmp_path, text)
    assert s["TaskTemplate"]["RestartPolicy"] == {
        "Condition": "on-failure",
        "Delay": 10 * S,
        "MaxAttempts": 0,
        "Window": 60 * S,
    }
    assert deploy.warnings(load(tmp_path, text)) == [
        "service 's': Ignoring unsupported options: restart (deploy.restart_policy is set)"
    ]
    partial = spec(tmp_path, "services: {s: {image: x, deploy: {restart_policy: {delay: 0s}}}}")
    assert partial["TaskTemplate"]["RestartPolicy"] == {"Delay": 0}
    text = "services: {s: {image: x, deploy: {restart_policy: {condition: always}}}}"
    assert "restart_policy.condition: unknown condition 'always'" in refused(tmp_path, text)


# -- update and rollback ------------------------------------------------------------------


def test_update_and_rollback_config(tmp_path: Path) -> None:
    s = spec(
        tmp_path,
        """
        services:
          s:
            image: x
            deploy:
              update_config:
                parallelism: 2
                delay: 10s
                failure_action: rollback
                monitor: 1m
                max_failure_ratio: 0.3
                order: start-first
              rollback_config: {monitor: 0s, delay: 0s}
        """,
    )
    assert s["UpdateConfig"] == {
        "Parallelism": 2,
        "Delay": 10 * S,
        "FailureAction": "rollback",
        "Monitor": 60 * S,
        "MaxFailureRatio": pytest.approx(0.3),
        "Order": "start-first",
    }
    # docker/cli: parallelism 1 when not given, the zero durations left out
    assert s["RollbackConfig"] == {"Parallelism": 1, "MaxFailureRatio": 0}
    text = "services: {s: {image: x, deploy: {rollback_config: {failure_action: rollback}}}}"
    assert "rollback_config.failure_action: unknown failure_action 'rollback'" in refused(
        tmp_path, text
    )


# -- the defaults -------------------------------------------------------------------------


def test_with_defaults_fills_what_swarm_applies(tmp_path: Path) -> None:
    given = spec(tmp_path, "services: {s: {image: x, ports: ['80:80']}}")
    before = copy.deepcopy(given)
    full = deploy.with_defaults(given)
    assert given == before  # a new dict
    assert full["Mode"] == {"Replicated": {"Replicas": 1}}
    update = {
        "Parallelism": 1,
        "Delay": 0,
        "FailureAction": "pause",
        "Monitor": 5 * S,
        "MaxFailureRatio": 0,
        "Order": "stop-first",
    }
    assert full["UpdateConfig"] == update
    assert full["RollbackConfig"] == update
    assert full["TaskTemplate"]["RestartPolicy"] == {
        "Condition": "any",
        "Delay": 5 * S,
        "MaxAttempts": 0,
        "Window": 0,
    }
    assert full["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] == 10 * S
    assert full["EndpointSpec"]["Mode"] == "vip"
    assert full["EndpointSpec"]["Ports"][0]["PublishMode"] == "ingress"


def test_with_defaults_keeps_what_is_given(tmp_path: Path) -> None:
    given = spec(
        tmp_path,
        """
        services:
          s:
            image: x
            stop_grace_period: 2s
            restart: on-failure:2
            deploy:
              replicas: 0
              endpoint_mode: dnsrr
              update_config: {parallelism: 0, order: start-first}
              restart_policy: {delay: 0s}
        """,
    )
    full = deploy.with_defaults(given)
    assert full["Mode"] == {"Replicated": {"Replicas": 0}}
    assert full["UpdateConfig"]["Parallelism"] == 0
    assert full["UpdateConfig"]["Order"] == "start-first"
    assert full["UpdateConfig"]["Monitor"] == 5 * S
    assert full["TaskTemplate"]["RestartPolicy"] == {
        "Condition": "any",
        "Delay": 0,
        "MaxAttempts": 0,
        "Window": 0,
    }
    assert full["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] == 2 * S
    assert full["EndpointSpec"] == {"Mode": "dnsrr"}
    assert deploy.with_defaults(full) == full  # idempotent


def test_with_defaults_for_jobs_and_global_services() -> None:
    job = deploy.with_defaults({"Name": "j", "Mode": {"ReplicatedJob": {}}})
    assert "UpdateConfig" not in job and "RollbackConfig" not in job
    assert job["TaskTemplate"]["RestartPolicy"]["Condition"] == "on-failure"
    assert job["Mode"] == {"ReplicatedJob": {}}
    glob = deploy.with_defaults({"Name": "g", "Mode": {"Global": {}}})
    assert glob["Mode"] == {"Global": {}}
    assert glob["UpdateConfig"]["Monitor"] == 5 * S
    assert deploy.with_defaults({})["Mode"] == {"Replicated": {"Replicas": 1}}


# -- what is ignored, what is refused -----------------------------------------------------


def test_ignored_options_are_warned_about_by_service(tmp_path: Path) -> None:
    project = load(
        tmp_path,
        """
        services:
          api:
            image: x
            build: .
            container_name: the-api
            expose: [80]
            privileged: true
            read_only: false
            depends_on: [db]
            links: [db]
            x-custom: 1
            deploy:
              resources: {reservations: {devices: [{capabilities: [gpu]}]}}
          db: {image: y}
        """,
    )
    assert deploy.warnings(project) == [
        "service 'api': Ignoring unsupported options: build, container_name, expose, links,"
        " privileged, deploy.resources.reservations.devices"
    ]
    assert len(deploy.service_specs(project)) == 2


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ("{build: .}", "services.s.build: image is required: swarm services cannot build"),
        ("{image: x, cpu_shares: 512}", "services.s.cpu_shares: not supported by swarm"),
        ("{image: x, volumes_from: [t]}", "services.s.volumes_from: not supported by swarm"),
    ],
)
def test_what_swarm_cannot_run_is_refused(tmp_path: Path, service: str, message: str) -> None:
    assert message in refused(tmp_path, f"services: {{s: {service}, t: {{image: x}}}}")


def test_service_dependencies(tmp_path: Path) -> None:
    project = load(
        tmp_path,
        """
        services:
          web:
            image: x
            depends_on:
              api: {condition: service_healthy}
              db: {condition: service_started}
          api: {image: x, depends_on: [db]}
          db: {image: x}
        """,
    )
    assert deploy.service_dependencies(project) == {
        "demo_web": {"demo_api": "service_healthy", "demo_db": "service_started"},
        "demo_api": {"demo_db": "service_started"},
        "demo_db": {},
    }


# -- a realistic stack --------------------------------------------------------------------

GOLDEN = """
services:
  web:
    image: nginx:1.27
    ports: ["80:80"]
    networks: [front]
    depends_on: {api: {condition: service_healthy}}
    configs: [{source: nginx_conf, target: /etc/nginx/conf.d/default.conf}]
    deploy:
      replicas: 2
      update_config: {parallelism: 1, delay: 10s, order: start-first}
      placement: {preferences: [{spread: node.labels.zone}]}
  api:
    image: example/api:2.1
    command: ["--port", "8000"]
    environment: {DB_HOST: db, LOG_LEVEL: info}
    secrets: [db_password]
    networks: {front: {aliases: [backend]}, back: null}
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://localhost:8000/health"]
      interval: 10s
      timeout: 3s
      retries: 3
      start_period: 20s
    deploy:
      replicas: 3
      resources:
        limits: {cpus: "0.50", memory: 256M}
        reservations: {cpus: "0.25", memory: 128M}
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 2m}
      update_config: {parallelism: 1, failure_action: rollback, monitor: 30s}
      rollback_config: {parallelism: 0}
  db:
    image: postgres:16
    environment: {POSTGRES_PASSWORD_FILE: /run/secrets/db_password}
    secrets: [db_password]
    volumes: [dbdata:/var/lib/postgresql/data]
    networks: [back]
    stop_grace_period: 1m
    deploy:
      placement: {constraints: [node.labels.db == true]}
      resources: {limits: {memory: 1G}}
networks:
  front: {}
  back: {internal: true}
volumes:
  dbdata: {}
secrets:
  db_password: {file: ./db_password.txt}
configs:
  nginx_conf: {file: ./nginx.conf}
"""


def test_golden_stack(tmp_path: Path) -> None:
    (tmp_path / "db_password.txt").write_text("hunter2")
    (tmp_path / "nginx.conf").write_text("server {}")
    stack = deploy.stack_specs(load(tmp_path, GOLDEN))
    assert stack.warnings == []
    assert stack.external_networks == []
    assert [n["Name"] for n in stack.networks] == ["demo_back", "demo_front"]
    assert stack.networks[0]["Internal"] is True
    assert stack.secrets == [
        {"Name": "demo_db_password", "Labels": NS, "Data": base64.b64encode(b"hunter2").decode()}
    ]
    assert stack.configs == [
        {"Name": "demo_nginx_conf", "Labels": NS, "Data": base64.b64encode(b"server {}").decode()}
    ]
    assert stack.dependencies == {
        "demo_web": {"demo_api": "service_healthy"},
        "demo_api": {},
        "demo_db": {},
    }
    secret = {
        "File": {"Name": "db_password", "UID": "0", "GID": "0", "Mode": 0o444},
        "SecretID": "",
        "SecretName": "demo_db_password",
    }
    web, api, db = stack.services
    assert web == {
        "Name": "demo_web",
        "Labels": {**NS, deploy.LABEL_IMAGE: "nginx:1.27"},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "nginx:1.27",
                "Labels": NS,
                "Configs": [
                    {
                        "File": {
                            "Name": "/etc/nginx/conf.d/default.conf",
                            "UID": "0",
                            "GID": "0",
                            "Mode": 0o444,
                        },
                        "ConfigID": "",
                        "ConfigName": "demo_nginx_conf",
                    }
                ],
            },
            "Placement": {"Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]},
            "Networks": [{"Target": "demo_front", "Aliases": ["web"]}],
        },
        "Mode": {"Replicated": {"Replicas": 2}},
        "UpdateConfig": {
            "Parallelism": 1,
            "Delay": 10 * S,
            "MaxFailureRatio": 0,
            "Order": "start-first",
        },
        "EndpointSpec": {
            "Ports": [
                {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 80, "PublishMode": "ingress"}
            ]
        },
    }
    assert api == {
        "Name": "demo_api",
        "Labels": {**NS, deploy.LABEL_IMAGE: "example/api:2.1"},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "example/api:2.1",
                "Labels": NS,
                "Args": ["--port", "8000"],
                "Env": ["DB_HOST=db", "LOG_LEVEL=info"],
                "Secrets": [secret],
                "Healthcheck": {
                    "Test": ["CMD", "wget", "-qO-", "http://localhost:8000/health"],
                    "Interval": 10 * S,
                    "Timeout": 3 * S,
                    "StartPeriod": 20 * S,
                    "Retries": 3,
                },
            },
            "Resources": {
                "Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 256 << 20},
                "Reservations": {"NanoCPUs": 250_000_000, "MemoryBytes": 128 << 20},
            },
            "RestartPolicy": {
                "Condition": "on-failure",
                "Delay": 5 * S,
                "MaxAttempts": 3,
                "Window": 120 * S,
            },
            "Networks": [
                {"Target": "demo_back", "Aliases": ["api"]},
                {"Target": "demo_front", "Aliases": ["backend", "api"]},
            ],
        },
        "Mode": {"Replicated": {"Replicas": 3}},
        "UpdateConfig": {
            "Parallelism": 1,
            "FailureAction": "rollback",
            "Monitor": 30 * S,
            "MaxFailureRatio": 0,
        },
        "RollbackConfig": {"Parallelism": 0, "MaxFailureRatio": 0},
    }
    assert db == {
        "Name": "demo_db",
        "Labels": {**NS, deploy.LABEL_IMAGE: "postgres:16"},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "postgres:16",
                "Labels": NS,
                "Env": ["POSTGRES_PASSWORD_FILE=/run/secrets/db_password"],
                "Mounts": [
                    {
                        "Type": "volume",
                        "Target": "/var/lib/postgresql/data",
                        "Source": "demo_dbdata",
                        "VolumeOptions": {"Labels": NS},
                    }
                ],
                "Secrets": [secret],
                "StopGracePeriod": 60 * S,
            },
            "Resources": {"Limits": {"MemoryBytes": 1 << 30}},
            "Placement": {"Constraints": ["node.labels.db == true"]},
            "Networks": [{"Target": "demo_back", "Aliases": ["db"]}],
        },
        "Mode": {"Replicated": {}},
    }
    full = deploy.with_defaults(db)
    assert full["Mode"] == {"Replicated": {"Replicas": 1}}
    assert full["TaskTemplate"]["RestartPolicy"]["Delay"] == 5 * S
