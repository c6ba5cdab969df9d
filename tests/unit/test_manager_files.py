"""Secrets and configs: what a spec may hold, and how a service's references to them
are resolved (by ID or name) and held to what was read."""

from __future__ import annotations

import base64

import pytest

from orchestr.api.swarm import Config, Secret, Service, file_target
from orchestr.manager.files import CONFIG, SECRET, check_spec, resolve, users
from orchestr.manager.repo import encode
from orchestr.state.base import Put
from orchestr.state.memory import MemoryStore

DATA = base64.b64encode(b"s3cret").decode()


def test_a_spec_keeps_name_labels_and_data_and_refuses_what_is_wrong() -> None:
    spec = check_spec(SECRET, {"Name": "db_pass", "Labels": {"a": "b"}, "Data": DATA})
    assert spec == {"Name": "db_pass", "Labels": {"a": "b"}, "Data": DATA}
    big = base64.b64encode(b"x" * (500 * 1024 + 1)).decode()
    for body, words in (
        ({"Data": DATA}, "Name"),
        ({"Name": "-bad", "Data": DATA}, "invalid name"),
        ({"Name": "x" * 65, "Data": DATA}, "invalid name"),
        ({"Name": "ok"}, "Data"),
        ({"Name": "ok", "Data": "not base64!"}, "base64"),
        ({"Name": "ok", "Data": big}, "at most 512000"),
        ({"Name": "ok", "Data": DATA, "Driver": {"Name": "vault"}}, "drivers"),
        ({"Name": "ok", "Data": DATA, "Templating": {"Name": "golang"}}, "templated"),
        ({"Name": "ok", "Data": DATA, "Labels": {"a": 1}}, "Labels"),
    ):
        with pytest.raises(ValueError, match=words):
            check_spec(SECRET, body)
    assert check_spec(CONFIG, {"Name": "big", "Data": big})["Name"] == "big"  # 1000 KiB


def store_with() -> MemoryStore:
    store = MemoryStore()
    secret = Secret(id="s1", spec={"Name": "db_pass", "Data": DATA})
    config = Config(id="c1", spec={"Name": "app_conf", "Data": DATA})
    store.txn([], [Put("secrets/s1", encode(secret)), Put("configs/c1", encode(config))], [])
    return store


def spec(**container: object) -> dict[str, object]:
    return {"Name": "app", "TaskTemplate": {"ContainerSpec": {"Image": "busybox", **container}}}


def test_references_resolve_by_id_or_name_and_are_held() -> None:
    store = store_with()
    file = {"Name": "pw", "UID": "0", "GID": "0", "Mode": 0o400}
    resolved, held = resolve(
        store,
        spec(
            Secrets=[{"File": file, "SecretName": "db_pass"}],
            Configs=[{"File": {"Name": "/etc/app.conf"}, "ConfigID": "c1"}],
        ),
    )
    container = resolved["TaskTemplate"]["ContainerSpec"]  # type: ignore[index]
    assert container["Secrets"][0]["SecretID"] == "s1"
    assert container["Configs"][0]["ConfigName"] == "app_conf"
    assert len(held) == 2  # the service is written only if both are still as read
    assert file_target("secret", container["Secrets"][0]) == "/run/secrets/pw"
    assert file_target("config", {"File": {"Name": "app.conf"}}) == "/app.conf"
    assert resolve(store, spec()) == (spec(), [])


def test_wrong_references_are_named() -> None:
    store = store_with()
    for container, words in (
        ({"Secrets": [{"File": {"Name": "x"}, "SecretName": "nope"}]}, "secret not found: nope"),
        ({"Secrets": [{"File": {"Name": "x"}}]}, "SecretID or SecretName"),
        ({"Secrets": [{"SecretID": "s1"}]}, r"Secrets\[0\].File.Name"),
        ({"Secrets": [{"File": {"Name": "x", "Mode": "rw"}, "SecretID": "s1"}]}, "Mode"),
        ({"Secrets": [{"File": {"Name": "x", "UID": "root"}, "SecretID": "s1"}]}, "UID"),
        (
            {
                "Secrets": [{"File": {"Name": "/etc/x"}, "SecretID": "s1"}],
                "Configs": [{"File": {"Name": "/etc/x"}, "ConfigID": "c1"}],
            },
            "also the target",
        ),
    ):
        with pytest.raises(ValueError, match=words):
            resolve(store, spec(**container))


def test_the_services_using_a_secret_are_named() -> None:
    ref = {"File": {"Name": "pw"}, "SecretID": "s1", "SecretName": "db_pass"}
    web = Service(id="w", spec=spec(Secrets=[ref]) | {"Name": "web"})
    other = Service(id="o", spec=spec() | {"Name": "other"})
    assert users([web, other], SECRET, "s1") == ["web"]
    assert users([web, other], CONFIG, "s1") == []
