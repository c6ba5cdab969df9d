"""Merging Compose documents (orchestr.stack.merge), checked against the spec's examples
(13-merge.md, 05-services.md `extends`) and compose-go's `override` tests."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestr.stack.errors import StackError
from orchestr.stack.merge import (
    Path,
    list_or_mapping,
    mapping_from_list,
    merge,
    merge_service,
    port_key,
    volume_target,
)


def y(text: str) -> dict[str, Any]:
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


def svc(text: str, name: str = "test") -> dict[str, Any]:
    """A document with one service whose body is `text`."""
    return {"services": {name: y(text)}}


def merged_service(base: str, other: str, **tags: str) -> Any:
    result: Any = merge(svc(base), svc(other), tags=_tags(tags))
    return result["services"]["test"]


def _tags(tags: dict[str, str]) -> dict[Path, str]:
    return {("services", "test", *key.split("__")): value for key, value in tags.items()}


# ------------------------------------------------------------------ 13-merge.md examples


def test_spec_mapping_example() -> None:
    base = y("services: {foo: {key1: value1, key2: value2}}")
    other = y("services: {foo: {key2: VALUE, key3: value3}}")
    assert merge(base, other) == y("services: {foo: {key1: value1, key2: VALUE, key3: value3}}")


def test_spec_sequence_example() -> None:
    base = y("services: {foo: {DNS: [1.1.1.1]}}")
    other = y("services: {foo: {DNS: [8.8.8.8]}}")
    assert merge(base, other) == y("services: {foo: {DNS: [1.1.1.1, 8.8.8.8]}}")


def test_spec_shell_commands_example() -> None:
    base = y('services: {foo: {command: ["echo", "foo"]}}')
    other = y('services: {foo: {command: ["echo", "bar"]}}')
    assert merge(base, other) == y('services: {foo: {command: ["echo", "bar"]}}')


def test_spec_unique_resources_example() -> None:
    base = y("services: {foo: {volumes: ['foo:/work']}}")
    other = y("services: {foo: {volumes: ['bar:/work']}}")
    assert merge(base, other) == y("services: {foo: {volumes: ['bar:/work']}}")


def test_spec_reset_example() -> None:
    base = y("services: {app: {image: myapp, ports: ['8080:80'], environment: {FOO: BAR}}}")
    # `ports: !reset []` and `FOO: !reset null` were dropped by the YAML loader
    other = y("services: {app: {image: myapp, environment: {}}}")
    tags: dict[Path, str] = {
        ("services", "app", "ports"): "reset",
        ("services", "app", "environment", "FOO"): "reset",
    }
    assert merge(base, other, tags=tags) == {
        "services": {"app": {"image": "myapp", "environment": {}}}
    }


def test_spec_override_example() -> None:
    base = y("services: {app: {image: myapp, ports: ['8080:80']}}")
    other = y("services: {app: {ports: ['8443:443']}}")
    tags: dict[Path, str] = {("services", "app", "ports"): "override"}
    assert merge(base, other, tags=tags) == y(
        "services: {app: {image: myapp, ports: ['8443:443']}}"
    )
    # without the tag both are exposed
    plain: Any = merge(base, other)
    assert plain["services"]["app"]["ports"] == ["8080:80", "8443:443"]


# ----------------------------------------------------------- 05-services.md `extends`


def test_extends_environment_example_both_forms() -> None:
    common = y("{image: busybox, environment: {TZ: utc, PORT: 80}}")
    cli = y("{extends: {service: common}, environment: {PORT: 8080}}")
    result = merge_service(common, cli, path=("services", "cli"))
    assert result["environment"] == {"TZ": "utc", "PORT": 8080}
    assert result["image"] == "busybox"
    common_list = y("{image: busybox, environment: [TZ=utc, PORT=80]}")
    cli_list = y("{environment: [PORT=8080]}")
    assert merge_service(common_list, cli_list)["environment"] == {"TZ": "utc", "PORT": "8080"}


def test_extends_volume_example() -> None:
    common = y("{image: busybox, volumes: ['common-volume:/var/lib/backup/data:rw']}")
    cli = y("{volumes: ['cli-volume:/var/lib/backup/data:ro']}")
    assert merge_service(common, cli) == y(
        "{image: busybox, volumes: ['cli-volume:/var/lib/backup/data:ro']}"
    )


def test_extends_security_opt_appended_as_compose_go() -> None:
    common = y("{security_opt: ['label:role:ROLE']}")
    cli = y("{security_opt: ['label:user:USER', 'label:role:ROLE']}")
    # compose-go has no uniqueness rule for security_opt: plain append
    assert merge_service(common, cli)["security_opt"] == [
        "label:role:ROLE",
        "label:user:USER",
        "label:role:ROLE",
    ]


def test_merge_service_uses_service_rules_and_path_for_tags() -> None:
    base = y("{command: [a], environment: [A=1, B=2]}")
    other = y("{command: [b], environment: {C: 3}}")
    tags: dict[Path, str] = {("services", "web", "environment", "B"): "reset"}
    result = merge_service(base, other, tags=tags, path=("services", "web"))
    assert result == {"command": ["b"], "environment": {"A": "1", "C": 3}}


def test_merge_service_reset_whole_attribute() -> None:
    base = y("{image: a, ports: ['80:80'], labels: {a: b}}")
    other = y("{image: b}")
    tags: dict[Path, str] = {("ports",): "reset", ("labels",): "reset"}
    assert merge_service(base, other, tags=tags) == {"image": "b"}


# --------------------------------------------------------------- general tree rules


def test_scalars_override_mappings_merge_and_lists_append() -> None:
    base = y("x-a: {k: 1, l: [1], m: {n: 1}}\nname: one")
    other = y("x-a: {k: 2, l: [2], m: {o: 2}}\nname: two")
    assert merge(base, other) == y("x-a: {k: 2, l: [1, 2], m: {n: 1, o: 2}}\nname: two")


def test_mem_limit_string_int_either_way() -> None:
    assert merged_service("mem_limit: 1", "mem_limit: 256m") == {"mem_limit": "256m"}
    assert merged_service("mem_limit: 256m", "mem_limit: 1") == {"mem_limit": 1}


def test_null_in_other_keeps_base_and_null_in_base_takes_other() -> None:
    assert merged_service("image: a", "image: null") == {"image": "a"}
    assert merged_service("image: null", "image: b") == {"image": "b"}
    doc = merge(y("services: {a: {image: x}}"), y("services: {a: null, b: null}"))
    assert doc == {"services": {"a": {"image": "x"}, "b": None}}


def test_kind_mismatch_is_a_stack_error_naming_the_path() -> None:
    with pytest.raises(StackError) as caught:
        merge(y("services: {a: {deploy: {replicas: 1}}}"), y("services: {a: {deploy: [1]}}"))
    assert caught.value.path == ("services", "a", "deploy")
    assert "services.a.deploy" in str(caught.value)
    with pytest.raises(StackError):
        merged_service("security_opt: [a]", "security_opt: {a: b}")


def test_scalar_base_is_replaced_by_anything() -> None:
    assert merged_service("extends: common", "extends: {service: x}") == {
        "extends": {"service": "x"}
    }


def test_top_level_sections() -> None:
    base = y("""
name: base
include: [a.yaml]
services: {web: {image: a}}
networks: {front: {driver: bridge}}
volumes: {data: {}}
secrets: {s: {file: ./s}}
configs: {c: {file: ./c}}
x-common: {a: 1}
""")
    other = y("""
name: other
include: [b.yaml]
services: {db: {image: b}}
networks: {front: {driver_opts: {mtu: "1400"}}, back: null}
volumes: {data: {driver: local}}
secrets: {s: {labels: [a=b]}}
configs: {c: {labels: {x: y}}}
x-common: {b: 2}
""")
    assert merge(base, other) == y("""
name: other
include: [a.yaml, b.yaml]
services: {web: {image: a}, db: {image: b}}
networks: {front: {driver: bridge, driver_opts: {mtu: "1400"}}, back: null}
volumes: {data: {driver: local}}
secrets: {s: {file: ./s, labels: [a=b]}}
configs: {c: {file: ./c, labels: {x: y}}}
x-common: {a: 1, b: 2}
""")


def test_top_level_labels_mixed_forms() -> None:
    base = y("networks: {n: {labels: {a: '1'}}}\nvolumes: {v: {labels: [a=1]}}")
    other = y("networks: {n: {labels: [b=2]}}\nvolumes: {v: {labels: {a: '2'}}}")
    assert merge(base, other) == y(
        "networks: {n: {labels: {a: '1', b: '2'}}}\nvolumes: {v: {labels: {a: '2'}}}"
    )


# -------------------------------------------------------------- replaced attributes


@pytest.mark.parametrize("name", ["command", "entrypoint"])
def test_shell_attributes_are_replaced(name: str) -> None:
    assert merged_service(f"{name}: [a, b]", f"{name}: [c]") == {name: ["c"]}
    assert merged_service(f"{name}: a b", f"{name}: [c]") == {name: ["c"]}
    assert merged_service(f"{name}: [a]", f"{name}: c d") == {name: "c d"}
    # a null clears it, as compose-go's override rule does
    assert merged_service(f"{name}: [a]", f"{name}: null") == {name: None}


def test_healthcheck_test_replaced_rest_merged() -> None:
    base = "healthcheck: {test: [CMD, a], interval: 10s, retries: 3}"
    other = "healthcheck: {test: [CMD-SHELL, b], interval: 5s}"
    assert merged_service(base, other) == y(
        "healthcheck: {test: [CMD-SHELL, b], interval: 5s, retries: 3}"
    )


def test_ulimits_each_limit_replaced_as_compose_go() -> None:
    base = """
ulimits:
  nofile: {soft: 20000, hard: 40000}
  nproc: 65535
  locks: {soft: 20000, hard: 40000}
  core: 0
"""
    other = """
ulimits:
  nofile: {soft: 10000, hard: 40000}
  nproc: {soft: 65535}
  locks: {hard: 65535}
"""
    assert merged_service(base, other) == y("""
ulimits:
  nofile: {soft: 10000, hard: 40000}
  nproc: {soft: 65535}
  locks: {hard: 65535}
  core: 0
""")


# ----------------------------------------------------------------- key/value attributes


KEY_VALUE_PATHS = [
    ("environment",),
    ("labels",),
    ("annotations",),
    ("sysctls",),
    ("build", "args"),
    ("build", "labels"),
    ("build", "additional_contexts"),
    ("deploy", "labels"),
]


def _nest(path: tuple[str, ...], value: object) -> dict[str, Any]:
    result: Any = value
    for part in reversed(path):
        result = {part: result}
    return {"services": {"test": result}}


def _get(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = doc["services"]["test"]
    for part in path:
        value = value[part]
    return value


@pytest.mark.parametrize("where", KEY_VALUE_PATHS)
def test_key_value_sequence_forms(where: tuple[str, ...]) -> None:
    result = merge(_nest(where, ["FOO=BAR"]), _nest(where, ["QIX=ZOT", "EMPTY=", "NIL"]))
    assert _get(result, where) == {"FOO": "BAR", "QIX": "ZOT", "EMPTY": "", "NIL": None}


@pytest.mark.parametrize("where", KEY_VALUE_PATHS)
def test_key_value_mapping_forms(where: tuple[str, ...]) -> None:
    result = merge(
        _nest(where, {"FOO": "BAR"}), _nest(where, {"EMPTY": "", "NIL": None, "QIX": "ZOT"})
    )
    assert _get(result, where) == {"FOO": "BAR", "EMPTY": "", "NIL": None, "QIX": "ZOT"}


@pytest.mark.parametrize("where", KEY_VALUE_PATHS)
def test_key_value_mixed_forms(where: tuple[str, ...]) -> None:
    result = merge(_nest(where, {"FOO": "BAR", "A": 1}), _nest(where, ["QIX=ZOT", "A=2"]))
    assert _get(result, where) == {"FOO": "BAR", "A": "2", "QIX": "ZOT"}
    result = merge(_nest(where, ["FOO=BAR", "A=1"]), _nest(where, {"A": 3}))
    assert _get(result, where) == {"FOO": "BAR", "A": 3}


def test_key_value_overridden_key_keeps_its_place() -> None:
    result = merged_service("environment: [A=1, B=2, C=3]", "environment: {B: x, D: y}")
    assert list(result["environment"].items()) == [("A", "1"), ("B", "x"), ("C", "3"), ("D", "y")]


def test_key_value_value_with_equals_sign() -> None:
    result = merged_service("environment: ['URL=a=b']", "environment: ['X=']")
    assert result["environment"] == {"URL": "a=b", "X": ""}


def test_key_value_duplicate_keys_in_a_list_later_wins() -> None:
    result = merged_service("environment: [A=1, A=2]", "environment: [B=3]")
    assert result["environment"] == {"A": "2", "B": "3"}


def test_key_value_only_on_one_side_is_kept_as_is() -> None:
    assert merged_service("environment: [A=1]", "image: x") == {
        "environment": ["A=1"],
        "image": "x",
    }
    assert merged_service("environment: [A=1]", "environment: null") == {"environment": ["A=1"]}


def test_reset_single_key_of_environment_in_either_form() -> None:
    for base, keep in (
        ("environment: {FOO: BAR, KEEP: 1}", 1),
        ("environment: [FOO=BAR, KEEP=1]", "1"),
    ):
        result = merged_service(base, "environment: {}", environment__FOO="reset")
        assert result["environment"] == {"KEEP": keep}


def test_override_single_key_of_labels() -> None:
    result = merged_service("labels: [a=1, b=2]", "labels: {a: x}", labels__a="override")
    assert result["labels"] == {"a": "x", "b": "2"}


# --------------------------------------------------------------------- extra_hosts


def test_extra_hosts_sequence_as_compose_go() -> None:
    result = merged_service(
        "extra_hosts: [example.com=1.2.3.4]",
        "extra_hosts: [localhost=127.0.0.1, example.com=1.2.3.4, example.com=4.3.2.1]",
    )
    assert result["extra_hosts"] == [
        "example.com=1.2.3.4",
        "localhost=127.0.0.1",
        "example.com=4.3.2.1",
    ]


def test_extra_hosts_mapping_as_compose_go() -> None:
    result = merged_service(
        "extra_hosts: {example.com: 1.2.3.4}",
        "extra_hosts: {localhost: 127.0.0.1, example.com: [1.2.3.4, 4.3.2.1]}",
    )
    assert result["extra_hosts"] == [
        "example.com=1.2.3.4",
        "example.com=4.3.2.1",
        "localhost=127.0.0.1",
    ]


def test_extra_hosts_mixed_and_build() -> None:
    result = merged_service(
        "build: {context: ., extra_hosts: {a: 1.1.1.1}}",
        "build: {extra_hosts: ['a=1.1.1.1', 'b=::1']}",
    )
    assert result["build"]["extra_hosts"] == ["a=1.1.1.1", "b=::1"]


# ---------------------------------------------------------------------- depends_on etc.


def test_depends_on_list_onto_list_becomes_mapping() -> None:
    result = merged_service("depends_on: [db]", "depends_on: [cache]")
    started = {"condition": "service_started", "required": True}
    assert result["depends_on"] == {"db": started, "cache": started}


def test_depends_on_list_and_mapping_merge_per_service() -> None:
    result = merged_service(
        "depends_on: [db, cache]",
        "depends_on: {db: {condition: service_healthy, restart: true}}",
    )
    assert result["depends_on"] == {
        "db": {"condition": "service_healthy", "required": True, "restart": True},
        "cache": {"condition": "service_started", "required": True},
    }


def test_depends_on_only_on_one_side_keeps_short_form() -> None:
    assert merged_service("depends_on: [db]", "image: x")["depends_on"] == ["db"]


def test_depends_on_reset_one_dependency_of_a_list() -> None:
    result = merged_service("depends_on: [db, cache]", "depends_on: {}", depends_on__db="reset")
    assert result["depends_on"] == {"cache": {"condition": "service_started", "required": True}}


def test_service_networks_sequence() -> None:
    result = merged_service("networks: [front-network, back-network]", "networks: [front-network]")
    assert result["networks"] == {"front-network": None, "back-network": None}


def test_service_networks_mapping_aliases_unique() -> None:
    base = """
networks:
  network1:
    aliases: [alias1, alias2]
    link_local_ips: [57.123.22.11, 57.123.22.13]
  network2:
    aliases: [alias1, alias3]
"""
    other = """
networks:
  network1:
    aliases: [alias3, alias1]
    link_local_ips: [57.123.22.12, 57.123.22.13]
"""
    assert merged_service(base, other) == y("""
networks:
  network1:
    aliases: [alias1, alias2, alias3]
    link_local_ips: [57.123.22.11, 57.123.22.13, 57.123.22.12]
  network2:
    aliases: [alias1, alias3]
""")


def test_service_networks_mixed() -> None:
    result = merged_service(
        "networks: [front, network1]",
        "networks: {network1: {aliases: [a]}, network2: null}",
    )
    assert result["networks"] == {"front": None, "network1": {"aliases": ["a"]}, "network2": None}


def test_service_models_mixed() -> None:
    result = merged_service("models: [llm, embedding]", "models: {vision: {endpoint_var: URL}}")
    assert result["models"] == {"llm": None, "embedding": None, "vision": {"endpoint_var": "URL"}}


# ------------------------------------------------------------------ build and logging


def test_build_string_and_mapping_either_way() -> None:
    assert merged_service("build: ./a", "build: {dockerfile: X}") == {
        "build": {"context": "./a", "dockerfile": "X"}
    }
    assert merged_service("build: {context: ./a, target: t}", "build: ./b") == {
        "build": {"context": "./b", "target": "t"}
    }
    assert merged_service("build: ./a", "build: ./b") == {"build": {"context": "./b"}}


def test_build_sequences_as_compose_go() -> None:
    base = """
build:
  context: .
  args: [FOO=BAR]
  additional_contexts: [resources=/path/to/resources, app=docker-image://my-app:latest]
  platforms: [linux/amd64]
  tags: ["myimage:mytag"]
"""
    other = """
build:
  args: {QIX: ZOT}
  additional_contexts: {app: "docker-image://new-app:latest", source: "https://x.git"}
  platforms: [linux/arm64, linux/amd64]
  tags: ["myimage:mytag", "registry/u/r:other"]
"""
    assert merged_service(base, other) == y("""
build:
  context: .
  args: {FOO: BAR, QIX: ZOT}
  additional_contexts:
    resources: /path/to/resources
    app: docker-image://new-app:latest
    source: https://x.git
  platforms: [linux/amd64, linux/arm64]
  tags: ["myimage:mytag", "registry/u/r:other"]
""")


def test_logging_same_driver_merges_options() -> None:
    result = merged_service(
        "logging: {driver: syslog, options: {syslog-address: 'tcp://a:1', tag: x}}",
        "logging: {driver: syslog, options: {syslog-address: 'tcp://b:1'}}",
    )
    assert result["logging"] == {
        "driver": "syslog",
        "options": {"syslog-address": "tcp://b:1", "tag": "x"},
    }


def test_logging_distinct_driver_drops_base_options() -> None:
    result = merged_service(
        "logging: {driver: local, options: {max-size: 10m}}",
        "logging: {driver: syslog, options: {syslog-address: 'tcp://b:1'}}",
    )
    assert result["logging"] == {"driver": "syslog", "options": {"syslog-address": "tcp://b:1"}}


def test_logging_implicit_driver_merges() -> None:
    result = merged_service(
        "logging: {driver: local, options: {max-size: 10m}}", "logging: {options: {max-file: 3}}"
    )
    assert result["logging"] == {"driver": "local", "options": {"max-size": "10m", "max-file": 3}}


# -------------------------------------------------------------------- unique sequences


def test_ports_short_and_long_forms_share_a_key() -> None:
    result = merged_service(
        "ports: ['8080:80', '9090:90', 5000]",
        "ports: [{target: 80, published: 8080, mode: host}, '0.0.0.0:9090:90/tcp']",
    )
    assert result["ports"] == [
        {"target": 80, "published": 8080, "mode": "host"},
        "0.0.0.0:9090:90/tcp",
        5000,
    ]


def test_ports_differing_in_ip_or_protocol_are_distinct() -> None:
    result = merged_service(
        "ports: ['8080:80', '6060:6060/udp']",
        "ports: ['127.0.0.1:8080:80', '8080:80/udp', '6060:6060/udp', '5000']",
    )
    assert result["ports"] == [
        "8080:80",
        "6060:6060/udp",
        "127.0.0.1:8080:80",
        "8080:80/udp",
        "5000",
    ]


def test_ports_long_unicity_as_compose_go() -> None:
    base = """
ports:
  - {target: 80, host_ip: 127.0.0.1, published: "8080", protocol: tcp, mode: host}
  - {target: 81, published: "8080", protocol: tcp}
"""
    other = """
ports:
  - {target: 80, host_ip: 127.0.0.2, published: "8080", protocol: tcp}
  - {target: 81, published: "8080"}
"""
    assert merged_service(base, other)["ports"] == [
        {
            "target": 80,
            "host_ip": "127.0.0.1",
            "published": "8080",
            "protocol": "tcp",
            "mode": "host",
        },
        {"target": 81, "published": "8080"},
        {"target": 80, "host_ip": "127.0.0.2", "published": "8080", "protocol": "tcp"},
    ]


@pytest.mark.parametrize(
    ("port", "key"),
    [
        (80, ("0.0.0.0", "", "80", "tcp")),
        ("80", ("0.0.0.0", "", "80", "tcp")),
        ("8080:80", ("0.0.0.0", "8080", "80", "tcp")),
        ("127.0.0.1:8080:80/udp", ("127.0.0.1", "8080", "80", "udp")),
        ("127.0.0.1::80", ("127.0.0.1", "", "80", "tcp")),
        ("[::1]:8080:80", ("::1", "8080", "80", "tcp")),
        ("8000-8001:80-81/UDP", ("0.0.0.0", "8000-8001", "80-81", "udp")),
        ({"target": 80, "published": 8080}, ("0.0.0.0", "8080", "80", "tcp")),
        (
            {"target": 53, "host_ip": "10.0.0.1", "published": "53", "protocol": "udp"},
            ("10.0.0.1", "53", "53", "udp"),
        ),
    ],
)
def test_port_key(port: object, key: tuple[str, str, str, str]) -> None:
    assert port_key(port) == key


def test_port_without_target_is_an_error() -> None:
    with pytest.raises(StackError, match="no target"):
        merged_service("ports: [{published: 80}]", "ports: ['80:80']")


def test_volumes_by_target_long_and_short() -> None:
    base = "volumes: ['a:/a', {type: bind, source: ./b, target: /b}, /anon]"
    other = "volumes: ['c:/c', {type: volume, source: v, target: /a}, './x:/b:ro']"
    assert merged_service(base, other)["volumes"] == [
        {"type": "volume", "source": "v", "target": "/a"},
        "./x:/b:ro",
        "/anon",
        "c:/c",
    ]


@pytest.mark.parametrize(
    ("volume", "target"),
    [
        ("/data", "/data"),
        ("./data:/data", "/data"),
        ("data:/data:ro", "/data"),
        ("C:\\data:/data:rw", "/data"),
        ({"type": "tmpfs", "target": "/t"}, "/t"),
    ],
)
def test_volume_target(volume: object, target: str) -> None:
    assert volume_target(volume) == target


def test_volume_without_target_is_an_error() -> None:
    with pytest.raises(StackError) as caught:
        merged_service("volumes: [{type: volume, source: v}]", "volumes: ['a:/a']")
    assert caught.value.path == ("services", "test", "volumes", 0)


def test_devices_by_target_as_compose_go() -> None:
    result = merged_service(
        "devices: ['/dev/sda:/dev/sda', '/dev/sdb:/dev/sdb', '/dev/sdd']",
        "devices: ['/dev/nvme0n1p1:/dev/sda', {source: /dev/x, target: /dev/sdd}, '/dev/sde']",
    )
    assert result["devices"] == [
        "/dev/nvme0n1p1:/dev/sda",
        "/dev/sdb:/dev/sdb",
        {"source": "/dev/x", "target": "/dev/sdd"},
        "/dev/sde",
    ]


def test_secrets_by_target_as_compose_go() -> None:
    result = merged_service(
        "secrets: [foo, bar, zot]", "secrets: [{source: zot, target: /run/secrets/foo}]"
    )
    assert result["secrets"] == [{"source": "zot", "target": "/run/secrets/foo"}, "bar", "zot"]


def test_configs_default_target_is_slash_source() -> None:
    result = merged_service(
        "configs: [a, {source: b, target: /etc/b}]",
        "configs: [{source: x, target: /a}, {source: b}, {source: c, target: /etc/b}]",
    )
    assert result["configs"] == [
        {"source": "x", "target": "/a"},
        {"source": "c", "target": "/etc/b"},
        {"source": "b"},
    ]


def test_env_file_by_path_string_list_mapping() -> None:
    assert merged_service("env_file: foo.env", "env_file: bar.env") == {
        "env_file": ["foo.env", "bar.env"]
    }
    assert merged_service("env_file: [bar.env, foo.env]", "env_file: foo.env") == {
        "env_file": ["bar.env", "foo.env"]
    }
    assert merged_service("env_file: foo.env", "env_file: [bar.env, foo.env]") == {
        "env_file": ["foo.env", "bar.env"]
    }
    assert merged_service(
        "env_file: [bar.env, foo.env]", "env_file: [{path: foo.env, required: true}]"
    ) == {"env_file": ["bar.env", {"path": "foo.env", "required": True}]}


def test_dns_family_deduplicated_and_string_forms() -> None:
    base = "dns: [8.8.8.8, 10.10.10.10, 9.9.9.9]\ndns_opt: [use-vc]\ndns_search: [dc1.example.com]"
    other = "dns: 9.9.9.9\ndns_opt: [no-tld-query, use-vc]\ndns_search: dc2.example.com"
    assert merged_service(base, other) == y("""
dns: [8.8.8.8, 10.10.10.10, 9.9.9.9]
dns_opt: [use-vc, no-tld-query]
dns_search: [dc1.example.com, dc2.example.com]
""")


def test_tmpfs_string_and_list() -> None:
    assert merged_service("tmpfs: /foo", "tmpfs: /bar") == {"tmpfs": ["/foo", "/bar"]}
    assert merged_service("tmpfs: [/bar, /foo]", "tmpfs: /foo") == {"tmpfs": ["/bar", "/foo"]}


def test_caps_profiles_links_expose_deduplicated() -> None:
    base = """
cap_add: [CAP_BPF, CAP_CHOWN]
cap_drop: [NET_ADMIN, SYS_ADMIN]
profiles: [p1, p2]
links: [service1, service2]
expose: [80, "443"]
"""
    other = """
cap_add: [CAP_KILL, CAP_CHOWN]
cap_drop: [NET_ADMIN, CAP_FOWNER]
profiles: [p2, p3]
links: [service2=alias1]
expose: ["80", 8080]
"""
    assert merged_service(base, other) == y("""
cap_add: [CAP_BPF, CAP_CHOWN, CAP_KILL]
cap_drop: [NET_ADMIN, SYS_ADMIN, CAP_FOWNER]
profiles: [p1, p2, p3]
links: [service1, service2=alias1]
expose: ["80", "443", 8080]
""")


def test_plain_appended_sequences_keep_duplicates() -> None:
    for name in ("security_opt", "device_cgroup_rules", "external_links", "volumes_from"):
        assert merged_service(f"{name}: [a]", f"{name}: [a]") == {name: ["a", "a"]}
    assert merged_service("label_file: a", "label_file: [a]") == {"label_file": ["a", "a"]}


def test_duplicates_within_a_single_side_collapse_only_when_merged() -> None:
    assert merged_service("ports: ['80:80', '80:80']", "image: x")["ports"] == ["80:80", "80:80"]
    assert merged_service("ports: ['80:80', '80:80']", "ports: []")["ports"] == ["80:80"]


# ----------------------------------------------------------------------- network ipam


def test_ipam_config_merged_by_subnet() -> None:
    base = y("""
networks:
  network1:
    ipam:
      config:
        - {subnet: 172.28.0.0/16, ip_range: 172.28.5.0/24, aux_addresses: {host1: a, host3: c}}
      options: {foo: bar, baz: "0"}
    labels: {com.example.department: Finance}
""")
    other = y("""
networks:
  network1:
    ipam:
      config:
        - {subnet: 172.28.0.0/16, ip_range: 172.28.5.1/24, aux_addresses: {host2: b}}
        - {subnet: 172.29.0.0/16}
      options: {bar: foo}
    labels: [com.example.department-new=New]
""")
    assert merge(base, other) == y("""
networks:
  network1:
    ipam:
      config:
        - subnet: 172.28.0.0/16
          ip_range: 172.28.5.1/24
          aux_addresses: {host1: a, host3: c, host2: b}
        - {subnet: 172.29.0.0/16}
      options: {foo: bar, baz: "0", bar: foo}
    labels: {com.example.department: Finance, com.example.department-new: New}
""")


def test_ipam_config_base_subnets_absent_from_other_are_kept() -> None:
    base = y("networks: {n: {ipam: {config: [{subnet: a}, {subnet: b}]}}}")
    other = y("networks: {n: {ipam: {config: [{subnet: b, gateway: g}]}}}")
    assert merge(base, other) == y(
        "networks: {n: {ipam: {config: [{subnet: a}, {subnet: b, gateway: g}]}}}"
    )


# ------------------------------------------------------------------------------- tags


def test_reset_whole_service_and_override_whole_service() -> None:
    base = y("services: {a: {image: x, ports: ['80:80']}, b: {image: y, environment: [A=1]}}")
    other = y("services: {b: {environment: [B=2]}}")
    tags: dict[Path, str] = {("services", "a"): "reset", ("services", "b"): "override"}
    assert merge(base, other, tags=tags) == {"services": {"b": {"environment": ["B=2"]}}}


def test_override_a_mapping_drops_base_keys() -> None:
    result = merged_service(
        "deploy: {replicas: 2, resources: {limits: {cpus: '1'}}}",
        "deploy: {resources: {reservations: {cpus: '0.5'}}}",
        deploy__resources="override",
    )
    assert result == y("deploy: {replicas: 2, resources: {reservations: {cpus: '0.5'}}}")


def test_reset_at_depth_and_in_top_level_sections() -> None:
    base = y("networks: {n: {driver: bridge, driver_opts: {a: '1', b: '2'}}}\nx-a: {k: 1}")
    other = y("networks: {n: {driver_opts: {}}}")
    tags: dict[Path, str] = {
        ("networks", "n", "driver_opts", "a"): "reset",
        ("x-a",): "reset",
    }
    assert merge(base, other, tags=tags) == y(
        "networks: {n: {driver: bridge, driver_opts: {b: '2'}}}"
    )


def test_reset_of_a_key_absent_from_base_is_harmless() -> None:
    assert merged_service("image: a", "image: b", command="reset") == {"image": "b"}


def test_tags_on_sequence_items_are_ignored_as_compose_go() -> None:
    tags: dict[Path, str] = {("services", "test", "ports", 0): "reset"}
    result: Any = merge(svc("ports: ['80:80', '81:81']"), svc("ports: []"), tags=tags)
    assert result["services"]["test"]["ports"] == ["80:80", "81:81"]


def test_unknown_tag_is_an_error() -> None:
    with pytest.raises(StackError, match="unknown tag"):
        merge({}, {}, tags={("services",): "merge"})


# --------------------------------------------------------------------- immutability


def test_inputs_are_not_mutated_and_result_shares_nothing() -> None:
    base = y("""
services:
  web:
    build: .
    environment: [A=1]
    depends_on: [db]
    ports: ['80:80']
    networks: [front]
    logging: {driver: local, options: {a: b}}
    deploy: {resources: {limits: {cpus: '1'}}}
networks: {n: {ipam: {config: [{subnet: a, aux_addresses: {h: x}}]}}}
""")
    other = y("""
services:
  web:
    build: {dockerfile: D}
    environment: {B: 2}
    depends_on: {db: {condition: service_healthy}}
    ports: ['80:80', '81:81']
    networks: {front: {aliases: [w]}}
    logging: {options: {c: d}}
    deploy: {resources: {limits: {memory: 1g}}}
  new: {image: n, volumes: [{type: volume, source: v, target: /v}]}
networks: {n: {ipam: {config: [{subnet: a, aux_addresses: {i: y}}]}}}
""")
    base_before, other_before = copy.deepcopy(base), copy.deepcopy(other)
    result: Any = merge(base, other)
    assert base == base_before
    assert other == other_before
    result["services"]["new"]["volumes"][0]["target"] = "/changed"
    result["services"]["web"]["deploy"]["resources"]["limits"]["cpus"] = "9"
    result["networks"]["n"]["ipam"]["config"][0]["aux_addresses"]["h"] = "z"
    assert base == base_before
    assert other == other_before


def test_tuples_and_read_only_mappings_are_accepted() -> None:
    from types import MappingProxyType

    base = MappingProxyType({"services": MappingProxyType({"a": {"dns": ("1.1.1.1",)}})})
    result = merge(base, {"services": {"a": {"dns": ["8.8.8.8"]}}})
    assert result == {"services": {"a": {"dns": ["1.1.1.1", "8.8.8.8"]}}}


# -------------------------------------------------------------------------- helpers


def test_mapping_from_list() -> None:
    assert mapping_from_list(["A=1", "B", "C=", "D=x=y", 5]) == {
        "A": "1",
        "B": None,
        "C": "",
        "D": "x=y",
        "5": None,
    }
    assert mapping_from_list(["host:1.2.3.4"], sep=":") == {"host": "1.2.3.4"}
    with pytest.raises(StackError) as caught:
        mapping_from_list(["A=1", {"B": 2}], path=("services", "a", "environment"))
    assert caught.value.path == ("services", "a", "environment", 1)


def test_list_or_mapping() -> None:
    assert list_or_mapping(None) == {}
    assert list_or_mapping({"A": 1}) == {"A": 1}
    assert list_or_mapping(["A=1"]) == {"A": "1"}
    assert list_or_mapping("A=1") == {"A": "1"}
    with pytest.raises(StackError):
        list_or_mapping(3)


# ----------------------------------------------------------------------- properties

_keys = st.from_regex(r"\Ak[a-z]{0,3}\Z")
_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
_mapping_trees = st.recursive(
    _scalars, lambda children: st.dictionaries(_keys, children, max_size=4), max_leaves=12
)
_trees = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=12,
)
_services = st.dictionaries(
    st.sampled_from(["web", "db"]),
    st.fixed_dictionaries(
        {},
        optional={
            "image": st.text(max_size=4),
            "environment": st.lists(st.from_regex(r"\A[A-C](=[a-z]{0,2})?\Z"), max_size=3)
            | st.dictionaries(st.sampled_from("ABC"), st.none() | st.text(max_size=2)),
            "ports": st.lists(st.sampled_from(["80", "8080:80", "127.0.0.1:81:81/udp", 90])),
            "command": st.lists(st.text(max_size=3), max_size=2),
            "depends_on": st.lists(st.sampled_from(["web", "db"]), unique=True),
        },
    ),
    max_size=2,
)
_documents = st.fixed_dictionaries({}, optional={"services": _services, "x-a": _trees})
_service_documents = st.fixed_dictionaries({}, optional={"services": _services})


@settings(max_examples=60, deadline=None)
@given(_documents)
def test_merging_with_an_empty_document_is_the_identity(doc: dict[str, Any]) -> None:
    assert merge(doc, {}) == doc
    assert merge({}, doc) == doc


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(_keys, _mapping_trees, max_size=4))
def test_merge_with_itself_is_idempotent_for_mapping_only_documents(doc: dict[str, Any]) -> None:
    assert merge(doc, doc) == doc


@settings(max_examples=60, deadline=None)
@given(_service_documents, _service_documents)
def test_applying_the_same_override_twice_changes_no_merged_attribute(
    base: dict[str, Any], other: dict[str, Any]
) -> None:
    other_before = copy.deepcopy(other)
    once: Any = merge(base, other)
    twice: Any = merge(once, other)
    assert other == other_before
    for name, theirs in (other.get("services") or {}).items():
        ours = (base.get("services") or {}).get(name) or {}
        for key in ("ports", "command", "image", "environment", "depends_on"):
            if key in ours and key in theirs:
                assert twice["services"][name][key] == once["services"][name][key]
