"""The local volume driver's store and copy-up, without a daemon and without root."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from agent.volumes import (
    ANONYMOUS_LABEL,
    NoSuchVolume,
    VolumeConflict,
    VolumeFilters,
    VolumeInUse,
    VolumeStore,
    copy_up,
    validate_name,
)


@pytest.fixture
def store(tmp_path: Path) -> VolumeStore:
    return VolumeStore(str(tmp_path / "volumes"))


# -- names and options ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ab", "v1", "my-vol.2_x", "9a", "A-"])
def test_docker_names_are_accepted(name: str) -> None:
    validate_name(name)


def test_a_one_character_name_is_too_short() -> None:
    with pytest.raises(ValueError, match="volume name is too short, names should be at least two"):
        validate_name("a")


@pytest.mark.parametrize("name", ["-ab", ".ab", "a b", "a/b", "../etc", "_x", "vol:1", "é1"])
def test_names_outside_docker_s_characters_are_refused(name: str) -> None:
    with pytest.raises(ValueError) as e:
        validate_name(name)
    assert str(e.value).startswith(f'"{name}" includes invalid characters for a local volume')
    assert '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed' in str(e.value)


def test_only_type_device_and_o_are_options(store: VolumeStore) -> None:
    with pytest.raises(ValueError, match='invalid option key: "size"'):
        store.create("v1", options={"size": "10m"})
    with pytest.raises(ValueError, match='missing required option: "device"'):
        store.create("v1", options={"type": "tmpfs"})
    with pytest.raises(ValueError, match='missing required option: "type"'):
        store.create("v1", options={"device": "tmpfs", "o": "size=1m"})
    options = {"type": "tmpfs", "device": "tmpfs", "o": "size=100m"}
    assert store.create("t1", options=options).options == options
    assert store.list() == [store.get("t1")]


def test_other_drivers_are_refused(store: VolumeStore) -> None:
    with pytest.raises(ValueError, match="volume driver nfs is not supported"):
        store.create("v1", driver="nfs")


# -- create, get, remove ---------------------------------------------------------------------


def test_a_volume_is_a_directory_with_its_metadata(store: VolumeStore) -> None:
    v = store.create("data", labels={"team": "a"})
    assert v.mountpoint == os.path.join(store.root, "data", "_data")
    assert os.path.isdir(v.mountpoint) and os.listdir(v.mountpoint) == []
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", v.created_at)
    meta = json.loads(Path(store.root, "data", "volume.json").read_text())
    assert meta == {
        "name": "data",
        "driver": "local",
        "labels": {"team": "a"},
        "options": {},
        "created_at": v.created_at,
        "scope": "local",
    }
    assert not v.anonymous
    assert VolumeStore(store.root).get("data") == v  # read back by a new store


def test_create_is_idempotent_for_the_same_options(store: VolumeStore) -> None:
    opts = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    first = store.create("v1", options=opts, labels={"a": "1"})
    # other labels do not matter: the existing volume comes back, as from dockerd
    assert store.create("v1", options=dict(opts), labels={"b": "2"}) == first
    with pytest.raises(VolumeConflict, match="v1: volume already exists with different options"):
        store.create("v1", options={**opts, "o": "size=2m"})
    with pytest.raises(VolumeConflict):
        store.create("v1")


def test_a_create_that_did_not_finish_is_invisible_and_finished_later(
    store: VolumeStore,
) -> None:
    os.makedirs(os.path.join(store.root, "half", "_data"))
    assert store.list() == []
    with pytest.raises(NoSuchVolume):
        store.get("half")
    assert store.create("half").name == "half"
    assert [v.name for v in store.list()] == ["half"]


def test_anonymous_volumes_get_a_random_name_and_the_label(store: VolumeStore) -> None:
    v = store.create(labels={"x": "y"})
    assert re.fullmatch(r"[0-9a-f]{64}", v.name)
    assert v.labels == {"x": "y", ANONYMOUS_LABEL: ""}
    assert v.anonymous
    assert store.create().name != v.name


def test_what_the_container_side_calls(store: VolumeStore, tmp_path: Path) -> None:
    made = store.get_or_create("mounted")
    assert made.options == {} and store.get_or_create("mounted") == made
    tmpfs = store.create("tmp", options={"type": "tmpfs", "device": "tmpfs"})
    assert store.get_or_create("tmp") == tmpfs  # its options, whatever they are
    with pytest.raises(ValueError, match="invalid characters"):
        store.get_or_create("a/b")
    assert store.create_anonymous().anonymous
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "f").write_text("x")
    assert store.copy_up(str(tmp_path / "img"), made.mountpoint)
    assert os.listdir(made.mountpoint) == ["f"]


def test_get_and_remove_unknown_volumes(store: VolumeStore) -> None:
    with pytest.raises(NoSuchVolume, match=r"^get nope: no such volume$"):
        store.get("nope")
    with pytest.raises(NoSuchVolume):
        store.get("../volumes")
    with pytest.raises(NoSuchVolume, match=r"^get nope: no such volume$"):
        store.remove("nope")
    store.remove("nope", force=True)  # force: a missing volume is fine


def test_a_volume_in_use_is_never_removed(store: VolumeStore) -> None:
    store.create("busy")
    store.in_use = lambda: {"busy": ["c1", "c2"]}
    for force in (False, True):
        with pytest.raises(VolumeInUse) as e:
            store.remove("busy", force=force)
        assert str(e.value) == "remove busy: volume is in use - [c1, c2]"
    store.in_use = dict
    store.remove("busy")
    assert store.list() == []
    assert os.listdir(store.root) == []


def test_half_removed_volumes_are_swept_when_the_store_opens(store: VolumeStore) -> None:
    os.makedirs(os.path.join(store.root, ".removing-x-1234", "_data", "deep"))
    store.create("kept")
    assert sorted(os.listdir(VolumeStore(store.root).root)) == ["kept"]


# -- list filters --------------------------------------------------------------------------


def names(volumes: list[object]) -> list[str]:
    return [v.name for v in volumes]  # type: ignore[attr-defined]


def test_list_filters(store: VolumeStore) -> None:
    store.create("web-data", labels={"app": "web", "tier": "front"})
    store.create("db-data", labels={"app": "db"})
    store.create("cache", labels={"tmp": ""})
    store.in_use = lambda: {"db-data": ["c1"]}

    def listed(doc: object) -> list[str]:
        return names(store.list(VolumeFilters.parse(doc, VolumeFilters.LIST_KEYS)))

    assert listed(None) == ["cache", "db-data", "web-data"]
    assert listed({"name": ["data"]}) == ["db-data", "web-data"]
    assert listed({"name": ["web", "cac"]}) == ["cache", "web-data"]
    assert listed({"label": ["app"]}) == ["db-data", "web-data"]
    assert listed({"label": ["app=web"]}) == ["web-data"]
    assert listed({"label": ["app", "tier=front"]}) == ["web-data"]  # all of them
    assert listed({"label": {"tmp": True}}) == ["cache"]  # the older map form
    assert listed({"dangling": ["true"]}) == ["cache", "web-data"]
    assert listed({"dangling": ["0"]}) == ["db-data"]
    assert listed({"driver": ["local"], "name": ["cache"]}) == ["cache"]
    assert listed({"driver": ["nfs"]}) == []


def test_bad_filters_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid filter 'colour'"):
        VolumeFilters.parse({"colour": ["red"]}, VolumeFilters.LIST_KEYS)
    with pytest.raises(ValueError, match="invalid filter 'dangling=maybe'"):
        VolumeFilters.parse({"dangling": ["maybe"]}, VolumeFilters.LIST_KEYS)
    with pytest.raises(ValueError, match="invalid filter 'all'"):
        VolumeFilters.parse({"all": ["true"]}, VolumeFilters.LIST_KEYS)
    with pytest.raises(ValueError, match="expected a JSON object"):
        VolumeFilters.parse(["name"], VolumeFilters.LIST_KEYS)


# -- prune and usage -----------------------------------------------------------------------


def test_prune_takes_unused_anonymous_volumes_unless_all(store: VolumeStore) -> None:
    named = store.create("named")
    busy = store.create("busy")
    anon = store.create()
    anon_busy = store.create()
    Path(anon.mountpoint, "f").write_bytes(b"x" * 1000)
    Path(named.mountpoint, "g").write_bytes(b"y" * 10)
    store.in_use = lambda: {busy.name: ["c1"], anon_busy.name: ["c2"]}

    assert store.prune() == ([anon.name], 1000)
    assert sorted(names(store.list())) == sorted(["named", "busy", anon_busy.name])
    assert store.prune(VolumeFilters(all=True)) == (["named"], 10)
    assert sorted(names(store.list())) == sorted(["busy", anon_busy.name])


def test_prune_label_filters(store: VolumeStore) -> None:
    store.create("keep-me", labels={"keep": "1"})
    store.create("go-away", labels={"env": "test"})
    store.create("other")

    def prune(doc: object) -> list[str]:
        return store.prune(VolumeFilters.parse(doc, VolumeFilters.PRUNE_KEYS))[0]

    assert prune({"all": ["true"], "label": ["env=test"]}) == ["go-away"]
    assert prune({"all": ["1"], "label!": ["keep"]}) == ["other"]
    assert names(store.list()) == ["keep-me"]


def test_usage_counts_bytes_once_per_inode_and_references(store: VolumeStore) -> None:
    v = store.create("sized")
    data = Path(v.mountpoint)
    (data / "sub").mkdir()
    (data / "sub" / "a").write_bytes(b"a" * 300)
    os.link(data / "sub" / "a", data / "hard")
    (data / "link").symlink_to("sub/a")
    store.in_use = lambda: {"sized": ["c1", "c2"]}
    [usage] = store.usage()
    assert usage.volume == v
    assert usage.size == 300 + len("sub/a")
    assert usage.ref_count == 2


# -- copy-up -------------------------------------------------------------------------------


def test_copy_up_fills_an_empty_volume_only(tmp_path: Path) -> None:
    image = tmp_path / "image" / "app"
    (image / "conf" / "deep").mkdir(parents=True)
    (image / "conf" / "deep" / "x.cfg").write_text("x=1\n")
    (image / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(image / "run.sh", 0o750)
    (image / "latest").symlink_to("conf/deep/x.cfg")
    (image / "dangling").symlink_to("/nonexistent/target")
    os.link(image / "run.sh", image / "run-again.sh")
    os.mkfifo(image / "pipe")
    os.utime(image / "conf" / "deep" / "x.cfg", ns=(1_000_000_000, 2_000_000_000))
    os.utime(image / "conf", ns=(3_000_000_000, 4_000_000_000))
    os.chmod(image, 0o711)
    volume = tmp_path / "vol"
    volume.mkdir(mode=0o755)

    assert copy_up(str(image), str(volume))
    assert (volume / "conf" / "deep" / "x.cfg").read_text() == "x=1\n"
    assert os.stat(volume / "conf" / "deep" / "x.cfg").st_mtime_ns == 2_000_000_000
    assert os.stat(volume / "conf").st_mtime_ns == 4_000_000_000
    assert os.stat(volume / "run.sh").st_mode & 0o7777 == 0o750
    assert os.stat(volume).st_mode & 0o7777 == 0o711  # the root takes the image dir's mode
    assert os.readlink(volume / "latest") == "conf/deep/x.cfg"
    assert os.readlink(volume / "dangling") == "/nonexistent/target"
    assert os.stat(volume / "run.sh").st_ino == os.stat(volume / "run-again.sh").st_ino
    assert os.path.exists(volume / "pipe") and not os.path.isfile(volume / "pipe")

    (image / "new-in-image").write_text("later")
    (volume / "run.sh").write_text("changed by the container")
    assert not copy_up(str(image), str(volume))  # not empty any more: left alone
    assert not (volume / "new-in-image").exists()
    assert (volume / "run.sh").read_text() == "changed by the container"


def test_copy_up_without_content_at_the_mount_point(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    assert not copy_up(str(tmp_path / "missing"), str(volume))
    (tmp_path / "file").write_text("not a directory")
    assert not copy_up(str(tmp_path / "file"), str(volume))
    assert os.listdir(volume) == []


def test_copy_up_does_not_follow_symlinks_out_of_the_image(tmp_path: Path) -> None:
    outside = tmp_path / "host-secret"
    outside.mkdir()
    (outside / "key").write_text("secret")
    image = tmp_path / "image"
    image.mkdir()
    (image / "escape").symlink_to(outside)
    volume = tmp_path / "vol"
    volume.mkdir()
    assert copy_up(str(image), str(volume))
    assert os.path.islink(volume / "escape")
    assert os.listdir(volume) == ["escape"]
