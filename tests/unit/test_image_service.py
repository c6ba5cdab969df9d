"""The image service's Docker shapes: images grouped by config, found by name, ID
or ID prefix; inspect, history, tag, rmi and prune as the docker CLI expects."""

from __future__ import annotations

import functools
from pathlib import Path

import jsonschema
import pytest
import yaml

from agent.images.importer import import_rootfs
from agent.images.reference import parse
from agent.images.service import ImageConflict, ImageService
from agent.images.store import ImageNotFound

SWAGGER = Path(__file__).resolve().parents[1] / "data" / "docker-engine-api-v1.41.yaml"


def tree(root: Path, text: str) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "motd").write_text(text)
    return root


@pytest.fixture
def service(tmp_path: Path) -> ImageService:
    s = ImageService(str(tmp_path / "data"))
    import_rootfs(s.content, s.images, str(tree(tmp_path / "a", "a")), parse("alpha:1"), ["sh"])
    import_rootfs(s.content, s.images, str(tree(tmp_path / "b", "b")), parse("beta"), ["sh"])
    return s


def without_nulls(value: object) -> object:
    """Docker sends null for empty Go maps and slices (Volumes, OnBuild, Labels...);
    swagger 2.0 cannot say so, so nulls are dropped before validating."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


@functools.cache
def swagger_definitions() -> dict[str, object]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    definitions: dict[str, object] = yaml.load(SWAGGER.read_text(), Loader=loader)["definitions"]
    return definitions


def swagger_schema(name: str) -> dict[str, object]:
    """A definition of the Engine API's swagger, as a JSON schema (refs resolve in it)."""
    definitions = swagger_definitions()
    schema = definitions[name]
    assert isinstance(schema, dict)
    return {"definitions": definitions, **schema}


def test_images_are_listed_once_per_config_with_all_their_names(service: ImageService) -> None:
    alpha = service.find("alpha:1")
    service.images.tag("docker.io/library/alpha:again", alpha.names[0].target)
    records = service.records()
    assert len(records) == 2
    again = service.find("alpha:again")
    assert again.id == alpha.id
    assert sorted(again.repo_tags) == ["alpha:1", "alpha:again"]
    summary = service.summary(again)
    assert summary["Id"] == alpha.id and summary["Size"] > 0
    jsonschema.validate(without_nulls(summary), swagger_schema("ImageSummary"))


def test_find_by_id_and_unique_prefix(service: ImageService) -> None:
    alpha = service.find("alpha:1")
    hexdigits = alpha.id.split(":")[1]
    assert service.find(alpha.id).id == alpha.id
    assert service.find(hexdigits[:12]).id == alpha.id
    assert service.find("sha256:" + hexdigits[:8]).id == alpha.id
    with pytest.raises(ImageNotFound, match="No such image: nothere"):
        service.find("nothere")


def test_inspect_and_history_shapes(service: ImageService) -> None:
    record = service.find("beta")
    inspect = service.inspect(record)
    assert inspect["RepoTags"] == ["beta:latest"]
    assert inspect["Config"]["Cmd"] == ["sh"]
    assert inspect["RootFS"]["Layers"] == record.diff_ids
    jsonschema.validate(without_nulls(inspect), swagger_schema("Image"))
    history = service.history(record)
    assert history[0]["Id"] == record.id and history[0]["Tags"] == ["beta:latest"]
    assert history[0]["CreatedBy"] == "orchestr image import"
    assert history[0]["Size"] > 0


def test_tag_and_remove(service: ImageService) -> None:
    assert service.tag("alpha:1", "example.com/team/alpha", "v2") == "example.com/team/alpha:v2"
    alpha = service.find("alpha:1")
    with pytest.raises(ImageConflict, match="referenced in multiple repositories"):
        service.remove(alpha.id)
    assert service.remove("example.com/team/alpha:v2") == [
        {"Untagged": "example.com/team/alpha:v2"}
    ]
    assert service.remove("alpha:1") == [{"Untagged": "alpha:1"}, {"Deleted": alpha.id}]
    with pytest.raises(ImageNotFound):
        service.find("alpha:1")


def test_an_image_in_use_is_not_removed(service: ImageService) -> None:
    record = service.find("beta")
    service.in_use = lambda: {record.diff_ids[-1]}  # one layer: its chain ID is its diff ID
    with pytest.raises(ImageConflict, match="being used by a container"):
        service.remove("beta")
    assert service.find("beta").id == record.id


def test_prune_all_collects_the_blobs(service: ImageService) -> None:
    before = sum(1 for _ in service.content.walk())
    result = service.prune(all_images=True)
    assert len([d for d in result["ImagesDeleted"] if "Deleted" in d]) == 2
    assert result["SpaceReclaimed"] > 0
    assert sum(1 for _ in service.content.walk()) == 0 < before
    assert service.records() == []
