"""The loader end to end: files and environment in, a normalised Project out."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from orchestr.stack.errors import StackError
from orchestr.stack.loader import LoadOptions, find_files, load_project, project_name
from orchestr.stack.model import Project


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load(directory: Path, *files: str, environ: dict[str, str] | None = None, **kw: Any) -> Project:
    warnings: list[str] = []
    project = load_project(
        LoadOptions(
            files=files,
            cwd=str(directory),
            environ=environ or {},
            warn=warnings.append,
            **kw,
        )
    )
    object.__setattr__(project, "__warnings", warnings)
    return project


def failure(directory: Path, *files: str, **kw: Any) -> StackError:
    with pytest.raises(StackError) as caught:
        load(directory, *files, **kw)
    return caught.value


# -- finding files, naming the project -----------------------------------------------------


def test_default_file_and_its_override_in_a_parent_directory(tmp_path: Path) -> None:
    write(tmp_path / "My App" / "compose.yaml", "services: {web: {image: busybox}}\n")
    write(
        tmp_path / "My App" / "compose.override.yaml",
        "services: {web: {environment: [A=1]}}\n",
    )
    (tmp_path / "My App" / "sub").mkdir()
    found = find_files(str(tmp_path / "My App" / "sub"))
    assert [Path(f).name for f in found] == ["compose.yaml", "compose.override.yaml"]
    project = load(tmp_path / "My App" / "sub")
    assert project.name == "myapp"
    assert project.services["web"].environment == {"A": "1"}
    assert project.working_dir == str(tmp_path / "My App")


def test_no_file_is_a_clear_error(tmp_path: Path) -> None:
    error = failure(tmp_path)
    assert "no configuration file provided" in str(error)


@pytest.mark.parametrize(
    ("text", "name"), [("My App", "myapp"), ("_x.y-Z", "xy-z"), ("ok_1", "ok_1")]
)
def test_directory_names_become_project_names(text: str, name: str) -> None:
    assert project_name(text) == name


def test_project_name_precedence(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml", "name: fromfile\nservices: {a: {image: x}}\n")
    assert load(tmp_path).name == "fromfile"
    assert load(tmp_path, environ={"COMPOSE_PROJECT_NAME": "fromenv"}).name == "fromenv"
    assert load(tmp_path, project_name="flag", environ={"COMPOSE_PROJECT_NAME": "e"}).name == "flag"
    assert "not a valid project name" in str(failure(tmp_path, project_name="Bad Name"))


def test_name_is_interpolated_and_dotenv_gives_defaults(tmp_path: Path) -> None:
    write(tmp_path / ".env", "STAGE=dev\nTAG=1.0\n")
    write(tmp_path / "compose.yaml", "name: app-${STAGE}\nservices: {a: {image: 'x:${TAG}'}}\n")
    project = load(tmp_path, environ={"TAG": "2.0"})
    assert project.name == "app-dev"
    assert project.services["a"].image == "x:2.0"  # the process environment wins


def test_env_file_flag_replaces_dotenv(tmp_path: Path) -> None:
    write(tmp_path / ".env", "TAG=dotenv\n")
    write(tmp_path / "prod.env", "TAG=prod\n")
    write(tmp_path / "compose.yaml", "services: {a: {image: 'x:${TAG}'}}\n")
    assert load(tmp_path, env_files=["prod.env"]).services["a"].image == "x:prod"


def test_compose_file_variable_lists_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "services: {a: {image: x}}\n")
    write(tmp_path / "b.yaml", "services: {a: {command: run}}\n")
    project = load(tmp_path, environ={"COMPOSE_FILE": "a.yaml:b.yaml"})
    assert project.services["a"].command == ["run"]


def test_stdin(tmp_path: Path) -> None:
    project = load(tmp_path, "-", stdin=lambda: "services: {a: {image: x}}\n", project_name="p")
    assert list(project.services) == ["a"]


# -- merging, extends, include, profiles ----------------------------------------------------


def test_several_files_merge_by_the_spec_rules(tmp_path: Path) -> None:
    write(
        tmp_path / "compose.yaml",
        """\
        services:
          web:
            image: busybox
            command: ["echo", "base"]
            ports: ["8080:80"]
            environment: [A=1, B=2]
            volumes: ["./a:/data"]
        """,
    )
    write(
        tmp_path / "prod.yaml",
        """\
        services:
          web:
            command: ["echo", "prod"]
            ports: ["9090:90"]
            environment: {B: three}
            volumes: ["./b:/data"]
        """,
    )
    web = load(tmp_path, "compose.yaml", "prod.yaml").services["web"]
    assert web.command == ["echo", "prod"]
    assert [(p.published, p.target) for p in web.ports] == [("8080", 80), ("9090", 90)]
    assert web.environment == {"A": "1", "B": "three"}
    assert [(v.source, v.target) for v in web.volumes] == [(str(tmp_path / "b"), "/data")]


def test_reset_and_override_tags(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "services: {w: {image: x, ports: ['1:1'], environment: [A=1]}}\n")
    write(
        tmp_path / "b.yaml",
        "services:\n  w:\n    ports: !reset []\n    environment: !override {B: '2'}\n",
    )
    w = load(tmp_path, "a.yaml", "b.yaml").services["w"]
    assert w.ports == []
    assert w.environment == {"B": "2"}


def test_extends_in_the_same_file_and_another(tmp_path: Path) -> None:
    write(
        tmp_path / "common" / "base.yaml",
        """\
        services:
          base:
            image: busybox
            environment: {FROM: base}
            volumes: ["./shared:/shared"]
        """,
    )
    write(
        tmp_path / "compose.yaml",
        """\
        services:
          app:
            extends: {file: common/base.yaml, service: base}
            environment: {OWN: "yes"}
          twin:
            extends: app
            command: ["true"]
        """,
    )
    project = load(tmp_path)
    app = project.services["app"]
    assert app.image == "busybox"
    assert app.environment == {"FROM": "base", "OWN": "yes"}
    assert app.volumes[0].source == str(tmp_path / "common" / "shared")
    assert project.services["twin"].command == ["true"]
    assert project.services["twin"].environment == {"FROM": "base", "OWN": "yes"}


def test_extends_cycle_and_missing(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml", "services:\n  a: {extends: b}\n  b: {extends: a}\n")
    assert "extends forms a cycle" in str(failure(tmp_path))
    write(tmp_path / "compose.yaml", "services:\n  a: {extends: nope, image: x}\n")
    error = failure(tmp_path)
    assert "cannot extend service 'nope'" in str(error)
    assert error.line == 2


def test_include_brings_resources_with_their_own_directory(tmp_path: Path) -> None:
    write(tmp_path / "db" / ".env", "DB_IMAGE=postgres:16\n")
    write(
        tmp_path / "db" / "compose.yaml",
        "services:\n  db: {image: '${DB_IMAGE}', volumes: ['./init:/init']}\n"
        "volumes: {pgdata: {}}\n",
    )
    write(
        tmp_path / "compose.yaml",
        "include: [db/compose.yaml]\nservices:\n  web: {image: x, depends_on: [db]}\n",
    )
    project = load(tmp_path)
    assert project.services["db"].image == "postgres:16"
    assert project.services["db"].volumes[0].source == str(tmp_path / "db" / "init")
    assert "pgdata" in project.volumes
    assert project.services["web"].depends_on["db"].condition == "service_started"


def test_include_conflict_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "other.yaml", "services: {web: {image: other}}\n")
    write(tmp_path / "compose.yaml", "include: [other.yaml]\nservices: {web: {image: mine}}\n")
    assert "defined here and in the included other.yaml" in str(failure(tmp_path))


def test_profiles(tmp_path: Path) -> None:
    write(
        tmp_path / "compose.yaml",
        """\
        services:
          web: {image: x}
          debug: {image: x, profiles: [dev]}
          tool: {image: x, profiles: [tools], depends_on: [helper]}
          helper: {image: x, profiles: [helpers]}
        """,
    )
    assert set(load(tmp_path).services) == {"web"}
    assert set(load(tmp_path, profiles=["dev"]).services) == {"web", "debug"}
    assert set(load(tmp_path, environ={"COMPOSE_PROFILES": "dev"}).services) == {"web", "debug"}
    assert set(load(tmp_path, profiles=["*"]).services) == {"web", "debug", "tool", "helper"}
    # asking for a service enables it and what it depends on
    assert set(load(tmp_path, services=["tool"]).services) == {"web", "tool", "helper"}
    error = failure(tmp_path, profiles=["tools"])
    assert "depends on 'helper', which is disabled by its profiles" in str(error)
    assert set(load(tmp_path).disabled) == {"debug", "tool", "helper"}


# -- errors: one line, with the place --------------------------------------------------------


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml", "services:\n  web:\n    image: x\n   bad: [\n")
    error = failure(tmp_path)
    assert error.file == "compose.yaml"
    assert error.line is not None
    assert "\n" not in str(error)


def test_unknown_key_names_line_and_path(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml", "services:\n  web:\n    image: x\n    imag: y\n")
    error = failure(tmp_path)
    assert (error.file, error.line) == ("compose.yaml", 4)
    assert error.path[:2] == ("services", "web")
    assert "imag" in str(error)


def test_missing_required_variable(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml", "services:\n  web:\n    image: ${IMAGE:?set IMAGE}\n")
    error = failure(tmp_path)
    assert error.line == 3
    assert "set IMAGE" in str(error)


def test_bad_port_is_located(tmp_path: Path) -> None:
    write(
        tmp_path / "compose.yaml", "services:\n  web:\n    image: x\n    ports:\n      - 80:80:80\n"
    )
    error = failure(tmp_path)
    assert "is not a port mapping" in str(error) or "port" in str(error)
    assert error.line == 5


def test_undefined_references(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml", "services:\n  web:\n    image: x\n    networks: [front]\n")
    error = failure(tmp_path)
    assert "undefined network 'front'" in str(error)
    assert error.line is not None
    write(tmp_path / "compose.yaml", "services:\n  web:\n    image: x\n    volumes: [data:/d]\n")
    assert "undefined volume 'data'" in str(failure(tmp_path))
    write(tmp_path / "compose.yaml", "services:\n  web:\n    image: x\n    depends_on: [db]\n")
    assert "'db', which is not defined" in str(failure(tmp_path))


def test_unset_variables_warn_once(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml", "services:\n  a: {image: 'x${NOPE}', command: 'echo $NOPE'}\n")
    project = load(tmp_path)
    warnings = object.__getattribute__(project, "__warnings")
    assert len([w for w in warnings if "NOPE" in w]) == 1


def test_yaml_12_scalars(tmp_path: Path) -> None:
    write(
        tmp_path / "compose.yaml",
        "services:\n  a:\n    image: x\n    ports: [22:22]\n    environment: {A: yes, B: on}\n",
    )
    a = load(tmp_path).services["a"]
    assert [(p.published, p.target) for p in a.ports] == [("22", 22)]
    assert a.environment == {"A": "yes", "B": "on"}


def test_anchors_and_extension_fragments(tmp_path: Path) -> None:
    write(
        tmp_path / "compose.yaml",
        """\
        x-common: &common
          image: busybox
          environment: {SHARED: "1"}
        services:
          a:
            <<: *common
            command: ["a"]
          b:
            <<: *common
            environment: {OWN: "2"}
        """,
    )
    project = load(tmp_path)
    assert project.services["a"].image == "busybox"
    assert project.services["a"].environment == {"SHARED": "1"}
    assert project.services["b"].environment == {"OWN": "2"}  # merge keys do not deep-merge


def test_a_dependency_cycle_is_refused_with_its_place(tmp_path: Path) -> None:
    write(
        tmp_path / "compose.yaml",
        "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [c]}\n"
        "  c: {image: x, network_mode: 'service:a'}\n",
    )
    error = failure(tmp_path)
    assert "dependency cycle: a → b → c → a" in str(error)
    assert (error.file, error.line) == ("compose.yaml", 2)


def test_several_documents_in_one_file_merge(tmp_path: Path) -> None:
    write(
        tmp_path / "compose.yaml",
        "services: {a: {image: x, environment: [A=1]}}\n---\nservices: {a: {environment: [B=2]}}\n",
    )
    assert load(tmp_path).services["a"].environment == {"A": "1", "B": "2"}


def test_a_string_file_mode_is_octal(tmp_path: Path) -> None:
    """compose-go reads `mode: "0440"` as octal, like the YAML integer 0440."""
    write(tmp_path / "token.txt", "t")
    write(
        tmp_path / "compose.yaml",
        """\
        services:
          a:
            image: busybox
            secrets:
              - {source: token, mode: "0440"}
              - {source: token, target: again, mode: 0440}
        secrets:
          token: {file: ./token.txt}
        """,
    )
    modes = [s.mode for s in load(tmp_path).services["a"].secrets]
    assert modes == [0o440, 0o440]
