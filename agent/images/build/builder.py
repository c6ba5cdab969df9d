"""The builder: a parsed Dockerfile run step by step into an image.

Each stage starts from its base (an image in the store, an earlier stage, or
`scratch`) and carries an image in the making: its config document, its layer
descriptors and a cache key. Every instruction is one step:

- configuration steps (ENV, LABEL, USER, CMD, ENTRYPOINT, EXPOSE, VOLUME,
  STOPSIGNAL, SHELL, HEALTHCHECK, MAINTAINER, ARG) change the config only;
- file system steps (RUN, COPY, ADD, WORKDIR) mount the image so far as the
  lower layers of an overlay with a fresh upper directory, change the merged
  tree (RUN in orchestr's own runtime; COPY/ADD by copying into it; WORKDIR by
  making the directory), and turn the upper directory into the next layer
  (layer.py), which also becomes the snapshot of the new chain without being
  unpacked again. A step that changes nothing adds no layer.

The cache: a step's key is a digest of the previous key, the instruction
after expansion, and its inputs (RUN: the build arguments in scope; COPY/ADD:
a checksum of the sources' names, modes and contents, or the source stage's
config digest). The result (config and layers) is kept under
`<work_dir>/cache/<key>.json`; a later build with the same key takes it,
including its timestamps, so a build that changed nothing gives the same
image ID. An entry whose blobs are gone (collected) is a miss.

Progress is reported as the lines Docker's classic builder streams ("Step
2/7 : RUN ...", " ---> Using cache", the step's output), so the API can pass
them on unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.content import ContentStore, Descriptor, Digest
from agent.images import media
from agent.images.build.copy import CopyError, Ownership, checksum, copy_into, find_sources
from agent.images.build.dockerfile import (
    Dockerfile,
    DockerfileError,
    Instruction,
    Stage,
    expand_word,
    expand_words,
    parse,
    parse_arg,
    parse_duration,
    parse_key_values,
)
from agent.images.build.ignore import IgnoreRules
from agent.images.build.layer import commit_layer
from agent.images.bundle import Overrides, runtime_config
from agent.images.importer import platform_architecture
from agent.images.leases import Lease, LeaseManager, leases_for
from agent.images.platform import missing_platform, pick_manifest
from agent.images.reference import parse as parse_reference
from agent.images.service import unpack_layers
from agent.images.store import ImageNotFound, ImageStore
from agent.snapshots import OverlaySnapshotter, chain_id, mount_all, next_chain_id, unmount

__all__ = ["BuildError", "BuildOptions", "BuildResult", "Builder"]

DEFAULT_SHELL = ["/bin/sh", "-c"]
HISTORY_COMMENT = "buildkit.dockerfile.v0"
# Where the runtime mounts file systems in a RUN step: made in the image if
# missing, and removed again from the step's change when the step left them empty.
_RUNTIME_MOUNTPOINTS = ("proc", "dev", "sys", "etc/resolv.conf", "etc/hosts")


class BuildError(Exception):
    """A build that failed; the message names the step and the Dockerfile line."""


@dataclass(frozen=True)
class BuildOptions:
    context: str
    dockerfile: str | None = None  # default: <context>/Dockerfile
    tags: Sequence[str] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    network: str = "host"  # RUN's network: host (the node's) or none
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildResult:
    manifest: Descriptor
    image_id: str  # the config's digest, as Docker calls an image's ID
    steps: int
    cached: int
    tags: tuple[str, ...]


@dataclass
class _Image:
    """An image in the making."""

    config: dict[str, Any]
    layers: list[dict[str, Any]]
    key: str

    @property
    def container(self) -> dict[str, Any]:
        c = self.config.setdefault("config", {})
        assert isinstance(c, dict)
        return c

    @property
    def diff_ids(self) -> list[str]:
        rootfs = self.config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        ids = rootfs.setdefault("diff_ids", [])
        assert isinstance(ids, list)
        return ids

    def copy(self) -> _Image:
        return _Image(json.loads(json.dumps(self.config)), [dict(d) for d in self.layers], self.key)

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(_canonical(self.config)).hexdigest()


@dataclass
class _Change:
    rootfs: str
    upper: str
    added: bool = False
    # RUN: the runtime's mount points that existed before (the others are dropped)
    mountpoints: set[str] | None = None


@dataclass
class _StageState:
    stage: Stage
    image: _Image
    args: dict[str, str | None]  # ARGs in scope (None: declared without a value)
    shell: list[str]
    cmd_set: bool = False


def _canonical(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _key(*parts: object) -> str:
    return hashlib.sha256(_canonical(parts)).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Builder:
    """Builds images from Dockerfiles into the content and image stores."""

    def __init__(
        self,
        content: ContentStore,
        images: ImageStore,
        snapshots: OverlaySnapshotter,
        work_dir: str,
        *,
        runtime_root: str,
        emit: Callable[[str], None] = lambda line: None,
        leases: LeaseManager | None = None,
    ) -> None:
        self.content = content
        self.images = images
        self.snapshots = snapshots
        self.work_dir = os.path.abspath(work_dir)
        self.cache_dir = os.path.join(self.work_dir, "cache")
        self.runtime_root = runtime_root
        self.emit = emit
        self.leases = leases if leases is not None else leases_for(content)
        self._lease: Lease | None = None
        os.makedirs(self.cache_dir, mode=0o700, exist_ok=True)

    # -- the build ---------------------------------------------------------------------

    def build(self, options: BuildOptions) -> BuildResult:
        context = os.path.abspath(options.context)
        if not os.path.isdir(context):
            raise BuildError(f"{options.context}: the build context is not a directory")
        dockerfile_path = options.dockerfile or os.path.join(context, "Dockerfile")
        try:
            with open(dockerfile_path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise BuildError(f"{dockerfile_path}: no such Dockerfile") from None
        name = os.path.relpath(dockerfile_path, context)
        try:
            df = parse(text, name if not name.startswith("..") else dockerfile_path)
            ignore = IgnoreRules.for_context(context, dockerfile_path)
        except (DockerfileError, ValueError) as e:
            raise BuildError(str(e)) from None
        tags = [str(parse_reference(t)) for t in options.tags]
        # Blobs written by this build stay out of the collector's reach until tagged.
        with self.leases.lease() as self._lease:
            try:
                run = _Run(self, df, options, context, ignore)
                image = run.execute()
                manifest, image_id = self._finish(image, options.labels)
                for tag in tags:
                    self.images.tag(tag, manifest)
            finally:
                self._lease = None
        self.emit(f"Successfully built {image_id.split(':')[1][:12]}\n")
        for tag in tags:
            self.emit(f"Successfully tagged {parse_reference(tag).familiar()}\n")
        return BuildResult(manifest, image_id, run.steps_done, run.cached, tuple(tags))

    def _finish(self, image: _Image, labels: Mapping[str, str]) -> tuple[Descriptor, str]:
        final = image.copy()
        if labels:
            final.container.setdefault("Labels", {}).update(labels)
        history = final.config.get("history") or []
        final.config["created"] = history[-1]["created"] if history else _now()
        config_desc = self._put_json(final.config, media.OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": media.OCI_MANIFEST,
            "config": config_desc.model_dump(mode="json", exclude_none=True),
            "layers": final.layers,
        }
        return self._put_json(manifest, media.OCI_MANIFEST), str(config_desc.digest)

    def _put_json(self, doc: object, media_type: str) -> Descriptor:
        data = _canonical(doc)
        if self._lease is not None:
            self._lease.add_blob(Digest.of(data), media_type)
        desc = self.content.put(data)
        return desc.model_copy(update={"media_type": media_type})

    # -- base images -------------------------------------------------------------------

    def base_image(self, ref: str) -> _Image:
        if ref == "scratch":
            config = {
                "architecture": platform_architecture(),
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }
            return _Image(config, [], _key("scratch"))
        try:
            image = self.images.get(ref)
        except ImageNotFound:
            raise BuildError(
                f"{ref}: no such image here (pull it with `orchestr pull {ref}`)"
            ) from None
        except ValueError as e:
            raise BuildError(f"FROM {ref}: {e}") from None
        target = image.target
        doc = json.loads(self.content.read(target.digest))
        if target.media_type in media.INDEXES or doc.get("manifests") is not None:
            children = [Descriptor.model_validate(m) for m in doc.get("manifests", [])]
            chosen = pick_manifest(children)
            if chosen is None:
                raise BuildError(f"{ref}: {missing_platform(children)}")
            target = chosen
            doc = json.loads(self.content.read(target.digest))
        config = json.loads(self.content.read(doc["config"]["digest"]))
        if config.get("config", {}).get("OnBuild"):
            raise BuildError(f"{ref}: ONBUILD triggers of base images are not supported yet")
        layers = [dict(layer) for layer in doc.get("layers", [])]
        return _Image(config, layers, _key("from", str(target.digest)))

    # -- the cache ---------------------------------------------------------------------

    def cached(self, key: str) -> _Image | None:
        try:
            with open(os.path.join(self.cache_dir, key + ".json"), "rb") as f:
                entry = json.loads(f.read())
        except (FileNotFoundError, ValueError):
            return None
        layers = entry.get("layers", [])
        if not all(self.content.has(layer["digest"]) for layer in layers):
            return None
        return _Image(entry["config"], layers, key)

    def remember(self, image: _Image) -> None:
        path = os.path.join(self.cache_dir, image.key + ".json")
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(_canonical({"config": image.config, "layers": image.layers}))
        os.replace(tmp, path)

    # -- file system steps -------------------------------------------------------------

    def chain_of(self, image: _Image) -> str | None:
        """The snapshot chain of the image's layers, unpacking what is missing."""
        if self._lease is not None:  # kept from the collector while the build mounts them
            for held in chain_id(image.diff_ids):
                self._lease.add_snapshot(held)
        layers = [(str(layer["digest"]), str(layer["mediaType"])) for layer in image.layers]
        return unpack_layers(self.content, self.snapshots, layers, image.diff_ids)

    @contextlib.contextmanager
    def readonly(self, image: _Image) -> Iterator[str]:
        """The image's file system mounted read-only; yields the mount point."""
        step_dir = tempfile.mkdtemp(prefix="from-", dir=self.work_dir)
        rootfs = os.path.join(step_dir, "rootfs")
        os.mkdir(rootfs)
        try:
            chain = self.chain_of(image)
            if chain is None:
                yield rootfs  # an image without layers: an empty tree
                return
            mount_all(self.snapshots.mounts(chain, step_dir, readonly=True), rootfs)
            try:
                yield rootfs
            finally:
                unmount(rootfs)
        finally:
            shutil.rmtree(step_dir, ignore_errors=True)

    @contextlib.contextmanager
    def changing(self, image: _Image) -> Iterator[_Change]:
        """The image's file system mounted over a fresh upper directory. When the
        block ends without an error, the change becomes the image's next layer
        (`_Change.added` says whether there was one)."""
        step_dir = tempfile.mkdtemp(prefix="step-", dir=self.work_dir)
        change = _Change(os.path.join(step_dir, "rootfs"), os.path.join(step_dir, "upper"))
        os.mkdir(change.rootfs)
        try:
            chain = self.chain_of(image)
            mount_all(self.snapshots.mounts(chain, step_dir), change.rootfs)
            try:
                yield change
            finally:
                unmount(change.rootfs)
            if change.mountpoints is not None:
                _drop_mountpoints(change.upper, change.mountpoints)
            change.added = self._commit(image, chain, change.upper)
        finally:
            shutil.rmtree(step_dir, ignore_errors=True)

    def _commit(self, image: _Image, parent: str | None, upper: str) -> bool:
        if not os.listdir(upper):
            return False
        layer, diff_id, _ = commit_layer(self.content, upper, self._lease)
        if self._lease is not None:
            self._lease.add_snapshot(next_chain_id(parent, diff_id))
        try:
            self.snapshots.commit(parent, upper, diff_id)
        except OSError:  # another file system: unpack the layer instead
            with self.content.open(layer.digest) as blob:
                self.snapshots.unpack(parent, blob, media.OCI_LAYER_GZIP, diff_id)
        image.layers.append(layer.model_dump(mode="json", exclude_none=True))
        image.diff_ids.append(diff_id)
        return True


class _Run:
    """One build: the stages the target needs, in order."""

    def __init__(
        self,
        builder: Builder,
        df: Dockerfile,
        options: BuildOptions,
        context: str,
        ignore: IgnoreRules,
    ) -> None:
        self.b = builder
        self.df = df
        self.options = options
        self.context = context
        self.ignore = ignore
        self.build_args = dict(options.build_args)
        self.used_args: set[str] = set()
        self.global_args = self._global_args()
        self.results: dict[int, _Image] = {}
        self.steps_done = 0
        self.cached = 0

    def _global_args(self) -> dict[str, str | None]:
        args: dict[str, str | None] = {}
        for instruction in self.df.global_args:
            env = {k: v for k, v in args.items() if v is not None}
            try:
                pairs = parse_arg(instruction.args[0], env, self.df.escape)
            except ValueError as e:
                raise BuildError(f"{self.df.filename}:{instruction.line}: ARG: {e}") from None
            for name, default in pairs:
                args[name] = self._arg_value(name, default, {})
        return args

    def _arg_value(
        self, name: str, default: str | None, globals_: Mapping[str, str | None]
    ) -> str | None:
        if name in self.build_args:
            self.used_args.add(name)
            return self.build_args[name]
        if default is not None:
            return default
        return globals_.get(name)

    # -- which stages, in which order

    def _stage_ref(self, word: str) -> Stage | None:
        """The stage a FROM or --from word names, if it names one."""
        lowered = word.lower()
        for stage in self.df.stages:
            if stage.name == lowered:
                return stage
        if word.isdigit() and int(word) < len(self.df.stages):
            return self.df.stages[int(word)]
        return None

    def _expand_global(self, word: str) -> str:
        env = {k: v for k, v in self.global_args.items() if v is not None}
        return expand_word(word, env, self.df.escape)

    def _needed(self, target: Stage) -> list[Stage]:
        needed: set[int] = set()

        def visit(stage: Stage) -> None:
            if stage.index in needed:
                return
            needed.add(stage.index)
            base = self._stage_ref(self._expand_global(stage.base))
            if base is not None and base.index < stage.index:
                visit(base)
            for instruction in stage.instructions:
                source = instruction.flag("from")
                if instruction.keyword in ("COPY", "ADD") and source is not None:
                    ref = self._stage_ref(self._expand_global(source))
                    if ref is not None:
                        if ref.index >= stage.index:
                            raise BuildError(
                                f"{self.df.filename}:{instruction.line}: --from={source} names "
                                "this stage or a later one"
                            )
                        visit(ref)

        visit(target)
        return [s for s in self.df.stages if s.index in needed]

    def execute(self) -> _Image:
        if self.options.target is not None:
            try:
                target = self.df.stage(self.options.target)
            except DockerfileError as e:
                raise BuildError(f"--target {self.options.target}: {e.message}") from None
        else:
            target = self.df.stages[-1]
        stages = self._needed(target)
        total = sum(1 + len(s.instructions) for s in stages)
        step = 0
        for stage in stages:
            step += 1
            state = self._from(stage, step, total)
            for instruction in stage.instructions:
                step += 1
                self._step(state, instruction, step, total)
            self.results[stage.index] = state.image
        unused = sorted(set(self.build_args) - self.used_args)
        if unused:
            self.b.emit(f"[Warning] One or more build-args {unused} were not consumed\n")
        return self.results[target.index]

    # -- steps

    def _from(self, stage: Stage, step: int, total: int) -> _StageState:
        self.b.emit(f"Step {step}/{total} : FROM {stage.base}{self._as(stage)}\n")
        self.steps_done += 1
        if stage.platform is not None:
            platform = self._expand_global(stage.platform)
            if platform not in ("linux", f"linux/{platform_architecture()}"):
                raise BuildError(
                    f"{self.df.filename}:{stage.line}: --platform={platform}: only this "
                    f"machine's platform (linux/{platform_architecture()}) is supported"
                )
        base_word = self._expand_global(stage.base)
        ref = self._stage_ref(base_word)
        if ref is not None and ref.index < stage.index:
            image = self.results[ref.index].copy()
        else:
            try:
                image = self.b.base_image(base_word)
            except BuildError as e:
                raise BuildError(f"{self.df.filename}:{stage.line}: FROM {e}") from None
        self.b.emit(f" ---> {_short(image.digest())}\n")
        shell = image.container.get("Shell") or DEFAULT_SHELL
        return _StageState(stage, image, {}, list(shell))

    @staticmethod
    def _as(stage: Stage) -> str:
        return f" AS {stage.name}" if stage.name else ""

    def _env(self, state: _StageState) -> dict[str, str]:
        """What instructions expand with: ARGs in scope, overridden by ENV."""
        env = {k: v for k, v in state.args.items() if v is not None}
        for entry in state.image.container.get("Env") or []:
            key, _, value = entry.partition("=")
            env[key] = value
        return env

    def _fail(self, instruction: Instruction, message: str) -> BuildError:
        return BuildError(
            f"{self.df.filename}:{instruction.line}: {instruction.keyword}: {message}"
        )

    def _step(self, state: _StageState, instruction: Instruction, step: int, total: int) -> None:
        self.b.emit(f"Step {step}/{total} : {instruction.source}\n")
        self.steps_done += 1
        handler = getattr(self, "_do_" + instruction.keyword.lower(), None)
        if handler is None:
            raise self._fail(instruction, "not supported yet")
        try:
            handler(state, instruction)
        except (ValueError, CopyError) as e:
            if isinstance(e, BuildError):
                raise
            raise self._fail(instruction, str(e)) from None
        self.b.emit(f" ---> {_short(state.image.digest())}\n")

    def _history(self, image: _Image, created_by: str, empty: bool) -> None:
        entry: dict[str, Any] = {
            "created": _now(),
            "created_by": created_by,
            "comment": HISTORY_COMMENT,
        }
        if empty:
            entry["empty_layer"] = True
        image.config.setdefault("history", []).append(entry)

    def _cached_step(
        self,
        state: _StageState,
        payload: object,
        change: Callable[[_Image], bool],
        created_by: str,
    ) -> None:
        """Run one step through the cache: `change` edits a copy of the image and
        says whether it added a layer."""
        key = _key(state.image.key, payload)
        if not self.options.no_cache:
            hit = self.b.cached(key)
            if hit is not None:
                self.b.emit(" ---> Using cache\n")
                self.cached += 1
                state.image = hit
                return
        image = state.image.copy()
        image.key = key
        added = change(image)
        self._history(image, created_by, empty=not added)
        self.b.remember(image)
        state.image = image

    def _config_step(
        self, state: _StageState, instruction: Instruction, edit: Callable[[dict[str, Any]], None]
    ) -> None:
        def change(image: _Image) -> bool:
            edit(image.container)
            return False

        probe = state.image.copy()
        edit(probe.container)  # the payload is the resulting config: expansion included
        self._cached_step(state, ["config", probe.container], change, instruction.source)

    # -- configuration instructions

    def _do_env(self, state: _StageState, instruction: Instruction) -> None:
        pairs = self._kv(state, instruction)

        def edit(c: dict[str, Any]) -> None:
            env = list(c.get("Env") or [])
            for key, value in pairs:
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
            c["Env"] = env

        self._config_step(state, instruction, edit)

    def _kv(self, state: _StageState, instruction: Instruction) -> list[tuple[str, str]]:
        try:
            return parse_key_values(
                instruction.args[0], self._env(state), self.df.escape, keyword=instruction.keyword
            )
        except ValueError as e:
            raise self._fail(instruction, str(e)) from None

    def _do_label(self, state: _StageState, instruction: Instruction) -> None:
        pairs = self._kv(state, instruction)

        def edit(c: dict[str, Any]) -> None:
            c["Labels"] = {**(c.get("Labels") or {}), **dict(pairs)}

        self._config_step(state, instruction, edit)

    def _do_maintainer(self, state: _StageState, instruction: Instruction) -> None:
        author = instruction.args[0]

        def change(image: _Image) -> bool:
            image.config["author"] = author
            return False

        self._cached_step(state, ["maintainer", author], change, instruction.source)

    def _do_arg(self, state: _StageState, instruction: Instruction) -> None:
        try:
            pairs = parse_arg(instruction.args[0], self._env(state), self.df.escape)
        except ValueError as e:
            raise self._fail(instruction, str(e)) from None
        for name, default in pairs:
            state.args[name] = self._arg_value(name, default, self.global_args)

    def _do_user(self, state: _StageState, instruction: Instruction) -> None:
        user = expand_word(instruction.args[0], self._env(state), self.df.escape)
        self._config_step(state, instruction, lambda c: c.__setitem__("User", user))

    def _do_stopsignal(self, state: _StageState, instruction: Instruction) -> None:
        signal = expand_word(instruction.args[0], self._env(state), self.df.escape)
        self._config_step(state, instruction, lambda c: c.__setitem__("StopSignal", signal))

    def _command(self, state: _StageState, instruction: Instruction) -> list[str]:
        if instruction.json_form:
            return list(instruction.args)
        return [*state.shell, instruction.args[0]]

    def _do_cmd(self, state: _StageState, instruction: Instruction) -> None:
        cmd = self._command(state, instruction)
        state.cmd_set = True
        self._config_step(state, instruction, lambda c: c.__setitem__("Cmd", cmd))

    def _do_entrypoint(self, state: _StageState, instruction: Instruction) -> None:
        entrypoint = self._command(state, instruction)
        reset_cmd = not state.cmd_set

        def edit(c: dict[str, Any]) -> None:
            c["Entrypoint"] = entrypoint
            if reset_cmd:  # a Cmd inherited from the base image does not survive
                c.pop("Cmd", None)

        self._config_step(state, instruction, edit)

    def _do_shell(self, state: _StageState, instruction: Instruction) -> None:
        if not instruction.json_form:
            raise self._fail(instruction, 'needs the JSON form: SHELL ["executable", "parameters"]')
        shell = list(instruction.args)
        state.shell = shell
        self._config_step(state, instruction, lambda c: c.__setitem__("Shell", shell))

    def _words(self, state: _StageState, instruction: Instruction) -> list[str]:
        if instruction.json_form:
            return [expand_word(w, self._env(state), self.df.escape) for w in instruction.args]
        return expand_words(instruction.args[0], self._env(state), self.df.escape)

    def _do_expose(self, state: _StageState, instruction: Instruction) -> None:
        ports: dict[str, dict[str, Any]] = {}
        for word in self._words(state, instruction):
            number, _, proto = word.partition("/")
            proto = (proto or "tcp").lower()
            if proto not in ("tcp", "udp", "sctp"):
                raise self._fail(instruction, f"{word}: unknown protocol {proto}")
            low, _, high = number.partition("-")
            if not low.isdigit() or (high and not high.isdigit()):
                raise self._fail(instruction, f"{word}: not a port or port range")
            for port in range(int(low), int(high or low) + 1):
                if not 0 < port < 65536:
                    raise self._fail(instruction, f"{word}: port {port} is out of range")
                ports[f"{port}/{proto}"] = {}

        self._config_step(
            state,
            instruction,
            lambda c: c.__setitem__("ExposedPorts", {**(c.get("ExposedPorts") or {}), **ports}),
        )

    def _do_volume(self, state: _StageState, instruction: Instruction) -> None:
        paths = self._words(state, instruction)
        if not paths or any(not p for p in paths):
            raise self._fail(instruction, "a volume needs a path")
        volumes: dict[str, dict[str, Any]] = {p: {} for p in paths}
        self._config_step(
            state,
            instruction,
            lambda c: c.__setitem__("Volumes", {**(c.get("Volumes") or {}), **volumes}),
        )

    def _do_healthcheck(self, state: _StageState, instruction: Instruction) -> None:
        if instruction.args[0] == "NONE":
            check: dict[str, Any] = {"Test": ["NONE"]}
        else:
            rest = instruction.args[1:]
            test = ["CMD", *rest] if instruction.json_form else ["CMD-SHELL", rest[0]]
            check = {"Test": test}
            names = {
                "interval": "Interval",
                "timeout": "Timeout",
                "start-period": "StartPeriod",
                "start-interval": "StartInterval",
            }
            for flag, value in instruction.flags:
                if flag in names:
                    try:
                        check[names[flag]] = parse_duration(value or "")
                    except ValueError as e:
                        raise self._fail(instruction, f"--{flag}: {e}") from None
                elif flag == "retries":
                    if not (value or "").isdigit():
                        raise self._fail(instruction, f"--retries={value}: not a number")
                    check["Retries"] = int(value or "0")
                else:
                    raise self._fail(instruction, f"unknown flag --{flag}")
        self._config_step(state, instruction, lambda c: c.__setitem__("Healthcheck", check))

    def _do_onbuild(self, state: _StageState, instruction: Instruction) -> None:
        raise self._fail(instruction, "ONBUILD is not supported yet")

    # -- file system instructions

    def _do_workdir(self, state: _StageState, instruction: Instruction) -> None:
        path = expand_word(instruction.args[0], self._env(state), self.df.escape)
        current = state.image.container.get("WorkingDir") or "/"
        workdir = os.path.normpath(os.path.join(current, path))

        def change(image: _Image) -> bool:
            image.container["WorkingDir"] = workdir
            with self.b.changing(image) as step:
                _make_workdir(step.rootfs, workdir)
            return step.added

        self._cached_step(state, ["workdir", workdir], change, f"WORKDIR {workdir}")

    def _do_copy(self, state: _StageState, instruction: Instruction) -> None:
        self._copy(state, instruction, unpack_archives=False)

    def _do_add(self, state: _StageState, instruction: Instruction) -> None:
        self._copy(state, instruction, unpack_archives=True)

    def _copy(self, state: _StageState, instruction: Instruction, *, unpack_archives: bool) -> None:
        for flag, _ in instruction.flags:
            if flag not in ("from", "chown", "chmod", "link"):
                raise self._fail(instruction, f"--{flag} is not supported yet")
        words = self._words(state, instruction)
        if len(words) < 2:
            raise self._fail(instruction, "needs at least one source and a destination")
        *patterns, dest = words
        env = self._env(state)
        chown = instruction.flag("chown")
        chmod_text = instruction.flag("chmod")
        chmod = None
        if chmod_text is not None:
            try:
                chmod = int(expand_word(chmod_text, env, self.df.escape), 8)
            except ValueError:
                raise self._fail(instruction, f"--chmod={chmod_text}: not an octal mode") from None
        chown = expand_word(chown, env, self.df.escape) if chown is not None else None
        source_flag = instruction.flag("from")
        workdir = state.image.container.get("WorkingDir") or "/"
        common = [instruction.keyword, patterns, dest, workdir, chown, chmod]

        if source_flag is None:
            sources = find_sources(self.context, patterns, self.ignore)
            payload = [*common, checksum(sources, self.ignore)]

            def change(image: _Image) -> bool:
                with self.b.changing(image) as step:
                    copy_into(
                        step.rootfs,
                        sources,
                        dest,
                        workdir=workdir,
                        ignore=self.ignore,
                        owner=_owner(chown, step.rootfs, keep=unpack_archives),
                        chmod=chmod,
                        unpack_archives=unpack_archives,
                    )
                return step.added

            self._cached_step(state, payload, change, f"{instruction.source} # buildkit")
            return

        if unpack_archives:
            raise self._fail(instruction, "--from is for COPY, not ADD")
        name = expand_word(source_flag, env, self.df.escape)
        stage = self._stage_ref(name)
        if stage is not None:
            source_image = self.results[stage.index]
        else:
            try:
                source_image = self.b.base_image(name)
            except BuildError as e:
                raise self._fail(instruction, f"--from={name}: {e}") from None
        payload = [*common, "from", source_image.digest()]

        def change_from(image: _Image) -> bool:
            with self.b.readonly(source_image) as source_root:
                sources = find_sources(source_root, patterns, None)
                with self.b.changing(image) as step:
                    copy_into(
                        step.rootfs,
                        sources,
                        dest,
                        workdir=workdir,
                        ignore=None,
                        owner=_owner(chown, step.rootfs, keep=False),
                        chmod=chmod,
                    )
            return step.added

        self._cached_step(state, payload, change_from, f"{instruction.source} # buildkit")

    def _do_run(self, state: _StageState, instruction: Instruction) -> None:
        network = self.options.network
        for flag, value in instruction.flags:
            if flag == "network" and value in ("host", "none", "default"):
                network = self.options.network if value == "default" else value
            else:
                raise self._fail(instruction, f"--{flag} is not supported yet")
        argv = self._command(state, instruction)
        image_env = {e.partition("=")[0] for e in state.image.container.get("Env") or []}
        args = sorted((k, v) for k, v in state.args.items() if v is not None and k not in image_env)
        payload = ["run", argv, args, network]

        def change(image: _Image) -> bool:
            with self.b.changing(image) as step:
                step.mountpoints = {
                    p for p in _RUNTIME_MOUNTPOINTS if os.path.lexists(f"{step.rootfs}/{p}")
                }
                code = self._run_container(
                    image, step.rootfs, argv, [f"{k}={v}" for k, v in args], network
                )
                if code != 0:
                    shown = json.dumps(argv) if instruction.json_form else " ".join(argv)
                    raise BuildError(
                        f"{self.df.filename}:{instruction.line}: The command '{shown}' returned "
                        f"a non-zero code: {code}"
                    )
            return step.added

        arg_prefix = f"|{len(args)} " + " ".join(f"{k}={v}" for k, v in args) + " " if args else ""
        self._cached_step(state, payload, change, f"RUN {arg_prefix}{' '.join(argv)} # buildkit")

    def _run_container(
        self, image: _Image, rootfs: str, argv: list[str], env: list[str], network: str
    ) -> int:
        from agent.runtime.linux import flags, libc
        from agent.runtime.runtime import Runtime

        overrides = Overrides(
            cmd=argv,
            entrypoint=[],
            env=env,
            working_dir=image.container.get("WorkingDir") or "/",
        )
        config = runtime_config(image.config, overrides, rootfs, root_path=rootfs)
        linux = config["linux"]
        assert isinstance(linux, dict)
        if network == "host":
            linux["namespaces"] = [n for n in linux["namespaces"] if n.get("type") != "network"]
            mounts = config["mounts"]
            assert isinstance(mounts, list)
            for name in ("resolv.conf", "hosts"):
                inside = os.path.join(rootfs, "etc", name)
                if os.path.isfile(f"/etc/{name}") and os.path.isfile(inside):
                    mounts.append(
                        {
                            "destination": f"/etc/{name}",
                            "type": "bind",
                            "source": f"/etc/{name}",
                            "options": ["rbind", "ro"],
                        }
                    )
        bundle = os.path.dirname(rootfs)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        libc.prctl(flags.PR_SET_CHILD_SUBREAPER, 1)
        runtime = Runtime(self.b.runtime_root)
        container_id = "build-" + uuid.uuid4().hex[:12]
        self.b.emit(f" ---> Running in {container_id[6:]}\n")
        read_fd, write_fd = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        reader = threading.Thread(target=self._pump, args=(read_fd,), daemon=True)
        try:
            c = runtime.create(container_id, bundle, stdio=(null, write_fd, write_fd))
        finally:
            os.close(write_fd)
            os.close(null)
        reader.start()
        try:
            runtime.start(container_id)
            status = runtime.wait(c)
        finally:
            runtime.delete(container_id, force=True)
            reader.join()
            os.close(read_fd)
        return status.code if not status.signal else 128 + status.signal

    def _pump(self, fd: int) -> None:
        pending = b""
        while chunk := os.read(fd, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self.b.emit(line.decode("utf-8", "replace") + "\n")
        if pending:
            self.b.emit(pending.decode("utf-8", "replace") + "\n")


def _short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


def _owner(chown: str | None, rootfs: str, *, keep: bool) -> Ownership:
    if chown is None:
        return Ownership(keep=keep)
    from agent.images.bundle import resolve_user

    uid, gid, _ = resolve_user(chown, rootfs)
    return Ownership(uid, gid)


def _make_workdir(rootfs: str, workdir: str) -> None:
    from agent.runtime.linux.rootfs import secure_join

    path = secure_join(rootfs, workdir)
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o755, exist_ok=True)


def _drop_mountpoints(upper: str, existing: set[str]) -> None:
    """Remove from a RUN step's change the mount points the runtime had to make."""
    for rel in sorted(set(_RUNTIME_MOUNTPOINTS) - existing, reverse=True):
        path = os.path.join(upper, rel)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)  # only when empty: a step may have written there
            elif os.path.isfile(path) and os.path.getsize(path) == 0:
                os.unlink(path)
        except OSError:
            pass
