"""Loading a stack: files and environment in, one normalised `Project` out.

The stages, in the order Docker Compose v2 (compose-go) runs them:

1. **Find the files.** `-f` files, else `COMPOSE_FILE` (split on `COMPOSE_PATH_SEPARATOR`,
   default `:`), else the first of compose.yaml, compose.yml, docker-compose.yaml,
   docker-compose.yml in the working directory or its nearest parent that has one, plus
   its `*.override.*` sibling. `-` reads standard input.
2. **The environment.** The project directory is `--project-directory`, else the first
   file's directory. `.env` there (or the `--env-file` files) gives defaults; the process
   environment wins. `COMPOSE_FILE`, `COMPOSE_PROJECT_NAME` and `COMPOSE_PROFILES` may
   come from either.
3. **Each file**: YAML (with positions), then per document interpolation, type casts and
   the Compose Specification's schema, then `extends` (same file or another; relative
   paths of another file resolved from its directory); documents and files merged in
   order by the spec's merge rules (with `!reset` / `!override`).
4. **include**: each included application is loaded on its own (own project directory
   and `.env`) and its resources copied in; a name defined on both sides is an error.
5. **Project name**: `-p`, else `COMPOSE_PROJECT_NAME`, else `name:`, else the project
   directory's name, lower-cased with what Compose does not allow removed.
6. **Profiles**: services whose profiles are not active (`--profile`, `COMPOSE_PROFILES`,
   `*` for all) are set aside, unless asked for by name; a dependency of an active
   service must be active (or `required: false`, then it is dropped with a warning).
7. **Normalise** (normalize.py) and check references (networks, volumes, secrets,
   configs, depends_on targets), then build the pydantic `Project` and refuse a
   dependency cycle.

Every error is a StackError naming the file, line and column where they are known.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from orchestr.stack.dotenv import DotenvError, read_dotenv
from orchestr.stack.errors import StackError, format_path
from orchestr.stack.interpolate import InterpolationError, interpolate_tree, warn_once
from orchestr.stack.merge import merge, merge_service
from orchestr.stack.model import Project
from orchestr.stack.normalize import Context, normalize
from orchestr.stack.schema import cast_types, check
from orchestr.stack.yamlfile import YamlDocument, load_yaml

__all__ = ["DEFAULT_FILES", "LoadOptions", "find_files", "load_project", "project_name"]

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
_OVERRIDES = {
    "compose.yaml": ("compose.override.yaml", "compose.override.yml"),
    "compose.yml": ("compose.override.yml", "compose.override.yaml"),
    "docker-compose.yaml": ("docker-compose.override.yaml", "docker-compose.override.yml"),
    "docker-compose.yml": ("docker-compose.override.yml", "docker-compose.override.yaml"),
}
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

Path = tuple[str | int, ...]


@dataclass
class LoadOptions:
    """What the command line and the process give the loader."""

    files: Sequence[str] = ()
    project_name: str | None = None
    project_directory: str | None = None
    env_files: Sequence[str] = ()
    profiles: Sequence[str] = ()
    services: Sequence[str] = ()
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: str = field(default_factory=os.getcwd)
    stdin: Callable[[], str] = sys.stdin.read
    warn: Callable[[str], None] | None = None
    cache_dir: str | None = None  # where valid documents are remembered (schema.check)


def find_files(directory: str) -> list[str]:
    """The default Compose file (and its override) in `directory` or its nearest parent."""
    current = os.path.abspath(directory)
    while True:
        for name in DEFAULT_FILES:
            candidate = os.path.join(current, name)
            if os.path.isfile(candidate):
                found = [candidate]
                for override in _OVERRIDES[name]:
                    other = os.path.join(current, override)
                    if os.path.isfile(other):
                        found.append(other)
                        break
                return found
        parent = os.path.dirname(current)
        if parent == current:
            raise StackError(
                "no configuration file provided: not found",
                hint=f"looked for {', '.join(DEFAULT_FILES)} in {directory} and its parents;"
                " name one with -f",
            )
        current = parent


def project_name(text: str) -> str:
    """A directory name as a project name: lower case, only [a-z0-9_-], as Compose does."""
    return re.sub(r"[^a-z0-9_-]", "", text.lower()).lstrip("_-")


class _Sources:
    """The YAML documents read so far, to find where a path was written."""

    def __init__(self) -> None:
        self.docs: list[YamlDocument] = []

    def locate(self, error: StackError, *, prefix: Path = ()) -> StackError:
        if error.file is not None:
            return error
        path = (*prefix, *error.path)
        best: tuple[int, YamlDocument, tuple[int, int]] | None = None
        for doc in reversed(self.docs):
            for depth in range(len(path), -1, -1):
                position = doc.positions.get(path[:depth])
                if position is not None:
                    if best is None or depth > best[0]:
                        best = (depth, doc, position)
                    break
        if best is None or (best[0] == 0 and path):
            return StackError(error.message, path=path, hint=error.hint)
        _, doc, (line, column) = best
        return StackError(
            error.message, file=doc.file, line=line, column=column, path=path, hint=error.hint
        )


class _Loader:
    def __init__(self, options: LoadOptions) -> None:
        self.options = options
        self.sources = _Sources()
        self.warn: Callable[[str], None] = warn_once(options.warn) or _no_warning

    # -- 1 and 2: files and environment ---------------------------------------------------

    def run(self) -> Project:
        opts = self.options
        base = os.path.abspath(os.path.join(opts.cwd, opts.project_directory or "."))
        environ = dict(opts.environ)
        early = self._dotenv(base, opts.env_files, environ) if not opts.files else {}
        files = list(opts.files)
        if not files:
            listed = environ.get("COMPOSE_FILE") or early.get("COMPOSE_FILE")
            if listed:
                separator = environ.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
                files = [os.path.join(base, f) for f in listed.split(separator) if f]
            else:
                files = find_files(base)
        files = [f if f == "-" else os.path.abspath(os.path.join(opts.cwd, f)) for f in files]
        first = files[0]
        if opts.project_directory:
            working_dir = base
        elif first == "-":
            working_dir = os.path.abspath(opts.cwd)
        else:
            working_dir = os.path.dirname(first)
        env = {**self._dotenv(working_dir, opts.env_files, environ), **environ}
        doc = self._load_files(files, env)
        doc = self._include(doc, working_dir, env)
        name = self._name(doc, env, working_dir)
        active = self._profiles(env)
        doc, disabled = self._apply_profiles(doc, active, opts.services)
        ctx = Context(name, working_dir, env.get, warn=self.warn)
        try:
            canonical = normalize(doc, ctx)
            _check_references(canonical)
            disabled_canonical = normalize({"services": disabled}, ctx)["services"]
        except StackError as exc:
            raise self.sources.locate(exc) from None
        try:
            project = Project.from_document(
                canonical, working_dir=working_dir, disabled=disabled_canonical
            )
        except ValidationError as exc:
            first_error = exc.errors()[0]
            where = tuple(p for p in first_error["loc"] if isinstance(p, str | int))
            raise self.sources.locate(
                StackError(first_error["msg"], path=("services", *where))
            ) from None
        from orchestr.graph.deps import build_graph

        try:
            build_graph(project)  # a cycle is an error of the stack, as in Compose
        except StackError as exc:
            raise self.sources.locate(exc) from None
        return project

    def _dotenv(
        self, directory: str, env_files: Sequence[str], environ: Mapping[str, str]
    ) -> dict[str, str]:
        paths = [os.path.join(self.options.cwd, f) for f in env_files]
        required = bool(env_files)
        if not paths:
            paths = [os.path.join(directory, ".env")]
        values: dict[str, str] = {}
        for path in paths:
            if not required and not os.path.isfile(path):
                continue

            def lookup(name: str) -> str | None:
                return environ.get(name, values.get(name))

            try:
                values.update(read_dotenv(path, lookup=lookup, required=required))
            except DotenvError as exc:
                raise StackError(str(exc)) from None
        return values

    # -- 3: files, documents, extends, merge --------------------------------------------

    def _read(self, file: str) -> str:
        if file == "-":
            return self.options.stdin()
        try:
            with open(file, encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            raise StackError(f"{file}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise StackError(f"{file}: cannot read: {exc}") from None

    def _load_files(self, files: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for file in files:
            for doc, tags in self._documents(file, env):
                doc = self._extends(doc, file, env, seen=())
                try:
                    merged = merge(merged, doc, tags=tags)
                except StackError as exc:
                    raise self.sources.locate(exc) from None
        return merged

    def _documents(
        self, file: str, env: Mapping[str, str]
    ) -> list[tuple[dict[str, Any], Mapping[Path, str]]]:
        shown = "<stdin>" if file == "-" else os.path.relpath(file, self.options.cwd)
        out = []
        for yaml_doc in load_yaml(self._read(file), shown):
            self.sources.docs.append(yaml_doc)
            data = yaml_doc.data
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise StackError(
                    f"the top level must be a mapping, not {type(data).__name__}",
                    file=shown,
                    line=1,
                )
            try:
                data = interpolate_tree(data, env.get, warn=self.warn)
            except InterpolationError as exc:
                raise self._at_string(exc.where, str(exc), yaml_doc) from None
            try:
                data = cast_types(data)
            except StackError as exc:
                raise self.sources.locate(exc) from None
            assert isinstance(data, dict)
            check(data, file=shown, locate=yaml_doc.locate, cache_dir=self.options.cache_dir)
            out.append((data, yaml_doc.tags))
        return out

    def _at_string(self, where: str, message: str, doc: YamlDocument) -> StackError:
        for path, (line, column) in doc.positions.items():
            if format_path(path) == where:
                prefix = f"{where}: "
                text = message.removeprefix(prefix)
                return StackError(text, file=doc.file, line=line, column=column, path=path)
        return StackError(message, file=doc.file)

    def _extends(
        self, doc: dict[str, Any], file: str, env: Mapping[str, str], seen: tuple[str, ...]
    ) -> dict[str, Any]:
        services = doc.get("services") or {}
        if not any(isinstance(s, dict) and "extends" in s for s in services.values()):
            return doc
        resolved: dict[str, Any] = {}
        for name in services:
            resolved[name] = self._extended(name, services, file, env, seen)
        return {**doc, "services": resolved}

    def _extended(
        self,
        name: str,
        services: Mapping[str, Any],
        file: str,
        env: Mapping[str, str],
        seen: tuple[str, ...],
    ) -> Any:
        service = services[name]
        if not isinstance(service, dict) or "extends" not in service:
            return service
        key = f"{file}:{name}"
        if key in seen:
            chain = " → ".join(s.rpartition(":")[2] for s in (*seen, key))
            raise self.sources.locate(
                StackError(f"extends forms a cycle: {chain}", path=("services", name, "extends"))
            )
        spec = service["extends"]
        spec = {"service": spec} if isinstance(spec, str) else spec
        base_name = spec["service"]
        own = {k: v for k, v in service.items() if k != "extends"}
        if spec.get("file"):
            other = os.path.normpath(os.path.join(os.path.dirname(file), spec["file"]))
            docs = self._documents(other, env)
            other_services: dict[str, Any] = {}
            for data, _tags in docs:
                other_services.update(data.get("services") or {})
            if base_name not in other_services:
                raise self.sources.locate(
                    StackError(
                        f"cannot extend service {base_name!r}: {spec['file']} has no such service",
                        path=("services", name, "extends"),
                    )
                )
            base = self._extended(base_name, other_services, other, env, (*seen, key))
            base = _absolute_paths(base, os.path.dirname(other), os.path.dirname(file))
        else:
            if base_name not in services:
                raise self.sources.locate(
                    StackError(
                        f"cannot extend service {base_name!r}: no such service",
                        path=("services", name, "extends"),
                    )
                )
            base = self._extended(base_name, services, file, env, (*seen, key))
        return merge_service(base or {}, own)

    # -- 4: include ---------------------------------------------------------------------

    def _include(
        self, doc: dict[str, Any], working_dir: str, env: Mapping[str, str]
    ) -> dict[str, Any]:
        entries = doc.pop("include", None) or []
        for i, entry in enumerate(entries):
            spec = {"path": entry} if isinstance(entry, str) else dict(entry)
            paths = spec["path"] if isinstance(spec["path"], list) else [spec["path"]]
            files = [os.path.normpath(os.path.join(working_dir, p)) for p in paths]
            directory = os.path.join(
                working_dir, spec.get("project_directory") or os.path.dirname(files[0])
            )
            env_files = spec.get("env_file") or []
            if isinstance(env_files, str):
                env_files = [env_files]
            env_files = [os.path.join(working_dir, f) for f in env_files]
            sub = _Loader(
                LoadOptions(
                    files=files,
                    project_directory=directory,
                    env_files=env_files,
                    environ=env,
                    cwd=self.options.cwd,
                    warn=self.options.warn,
                    cache_dir=self.options.cache_dir,
                )
            )
            inner_env = {
                **sub._dotenv(directory, env_files, env),
                **env,
            }
            try:
                included = sub._include(sub._load_files(files, inner_env), directory, inner_env)
            except StackError as exc:
                raise StackError(f"include[{i}]: {exc}") from None
            for section in ("services", "networks", "volumes", "secrets", "configs"):
                theirs = included.get(section) or {}
                ours = doc.setdefault(section, {}) if theirs else doc.get(section, {})
                for key, value in theirs.items():
                    if section == "services":
                        value = _absolute_paths(value, directory, working_dir)
                    if key in ours and ours[key] != value:
                        raise self.sources.locate(
                            StackError(
                                f"{key!r} is defined here and in the included {paths[0]}",
                                path=(section, key),
                            )
                        )
                    ours[key] = value
        return doc

    # -- 5 and 6: name, profiles --------------------------------------------------------

    def _name(self, doc: Mapping[str, Any], env: Mapping[str, str], working_dir: str) -> str:
        explicit = self.options.project_name or env.get("COMPOSE_PROJECT_NAME")
        if explicit:
            if not _PROJECT_NAME.match(explicit):
                raise StackError(
                    f"{explicit!r} is not a valid project name",
                    hint="lower-case letters, digits, dashes and underscores,"
                    " starting with a letter or digit",
                )
            return explicit
        named = doc.get("name")
        if named:
            if not _PROJECT_NAME.match(str(named)):
                raise self.sources.locate(
                    StackError(f"{named!r} is not a valid project name", path=("name",))
                )
            return str(named)
        derived = project_name(os.path.basename(working_dir))
        if not derived:
            raise StackError(
                f"cannot derive a project name from the directory {working_dir!r}",
                hint="name it with -p or a top-level name:",
            )
        return derived

    def _profiles(self, env: Mapping[str, str]) -> set[str]:
        if self.options.profiles:
            return set(self.options.profiles)
        return {p for p in (env.get("COMPOSE_PROFILES") or "").split(",") if p}

    def _apply_profiles(
        self, doc: dict[str, Any], active: set[str], wanted: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        services: dict[str, Any] = doc.get("services") or {}
        for name in wanted:
            if name not in services:
                raise StackError(f"no such service: {name}")

        def enabled(name: str) -> bool:
            profiles = (services[name] or {}).get("profiles") or []
            return not profiles or "*" in active or bool(active & set(profiles))

        keep = {name for name in services if enabled(name)}
        # A service asked for by name is enabled with what it depends on, as in Compose.
        stack = list(wanted)
        while stack:
            name = stack.pop()
            if name in keep and name not in wanted:
                continue
            keep.add(name)
            stack.extend(n for n in _depends_names(services[name]) if n in services)
        for name in sorted(keep):
            deps = (services[name] or {}).get("depends_on") or {}
            for dep in _depends_names(services[name]):
                if dep in keep:
                    continue
                required = True
                if isinstance(deps, dict):
                    required = bool((deps.get(dep) or {}).get("required", True))
                if not required:
                    self.warn(f"service {name!r} depends on {dep!r}, which is not enabled")
                    continue
                why = "is not defined" if dep not in services else "is disabled by its profiles"
                raise self.sources.locate(
                    StackError(
                        f"depends on {dep!r}, which {why}",
                        path=("services", name, "depends_on"),
                    )
                )
        disabled = {n: s for n, s in services.items() if n not in keep}
        kept = {n: s for n, s in services.items() if n in keep}
        for name, service in kept.items():
            deps = (service or {}).get("depends_on")
            if isinstance(deps, dict) and any(d not in keep for d in deps):
                kept[name] = {**service, "depends_on": {d: v for d, v in deps.items() if d in keep}}
        return {**doc, "services": kept}, disabled


def _no_warning(message: str) -> None:
    pass


def _depends_names(service: Any) -> list[str]:
    deps = (service or {}).get("depends_on") or []
    return list(deps)


def _absolute_paths(service: Any, directory: str, working_dir: str) -> Any:
    """Relative host paths of a service from another directory, made absolute."""
    if not isinstance(service, dict):
        return service
    out = dict(service)

    def fix(path: str) -> str:
        if path.startswith("~") or os.path.isabs(path):
            return path
        return os.path.normpath(os.path.join(directory, path))

    build = out.get("build")
    if isinstance(build, str):
        out["build"] = fix(build)
    elif isinstance(build, dict) and "context" in build:
        out["build"] = {**build, "context": fix(str(build["context"]))}
    env_file = out.get("env_file")
    if isinstance(env_file, str):
        out["env_file"] = fix(env_file)
    elif isinstance(env_file, list):
        out["env_file"] = [
            fix(e) if isinstance(e, str) else {**e, "path": fix(str(e["path"]))} for e in env_file
        ]
    volumes = []
    for volume in out.get("volumes") or []:
        if isinstance(volume, str):
            source, sep, rest = volume.partition(":")
            if sep and source.startswith("."):
                volume = f"{fix(source)}:{rest}"
        elif isinstance(volume, dict) and volume.get("type") == "bind" and volume.get("source"):
            volume = {**volume, "source": fix(str(volume["source"]))}
        volumes.append(volume)
    if "volumes" in out:
        out["volumes"] = volumes
    return out


def _check_references(doc: Mapping[str, Any]) -> None:
    """Names a service uses must exist: networks, volumes, secrets, configs, services."""
    services = doc.get("services") or {}
    networks = doc.get("networks") or {}
    volumes = doc.get("volumes") or {}
    for name, svc in services.items():
        where: Path = ("services", name)
        for net in svc.get("networks") or {}:
            if net not in networks:
                raise StackError(
                    f"refers to undefined network {net!r}",
                    path=(*where, "networks", net),
                    hint="declare it under the top-level networks:",
                )
        for i, vol in enumerate(svc.get("volumes") or []):
            if vol.get("type") == "volume" and vol.get("source") and vol["source"] not in volumes:
                raise StackError(
                    f"refers to undefined volume {vol['source']!r}",
                    path=(*where, "volumes", i),
                    hint="declare it under the top-level volumes:",
                )
        for section in ("secrets", "configs"):
            declared = doc.get(section) or {}
            for i, ref in enumerate(svc.get(section) or []):
                if ref["source"] not in declared:
                    raise StackError(
                        f"refers to undefined {section[:-1]} {ref['source']!r}",
                        path=(*where, section, i),
                    )
        for dep in svc.get("depends_on") or {}:
            if dep not in services:
                raise StackError(
                    f"depends on undefined service {dep!r}", path=(*where, "depends_on")
                )
        mode = svc.get("network_mode") or ""
        if mode.startswith("service:") and mode[8:] not in services:
            raise StackError(
                f"network_mode refers to undefined service {mode[8:]!r}",
                path=(*where, "network_mode"),
            )


def load_project(options: LoadOptions) -> Project:
    """Load, merge and normalise the stack `options` names (see the module docstring)."""
    return _Loader(options).run()
