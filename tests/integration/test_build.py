"""`orchestr build` end to end: a multi-stage Dockerfile built with RUN in our own
runtime over overlays, the image it makes run, and the layer cache."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from agent.content import ContentStore
from agent.images.build.builder import Builder, BuildError, BuildOptions
from agent.images.bundle import Overrides, runtime_config
from agent.images.importer import import_rootfs
from agent.images.reference import parse
from agent.images.store import ImageStore
from agent.snapshots import OverlaySnapshotter
from tests.conftest import Mounter, unique
from tests.integration.test_runtime import run_cli

DOCKERFILE = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS build
WORKDIR /src
COPY hello.txt ./
RUN echo "built from $(cat hello.txt)" > out.txt \\
 && mkdir -p /opt/app && cp out.txt /opt/app/

FROM scratch AS unused
COPY not-in-context /nowhere

FROM $BASE
ARG GREETING=hi
ENV APP=/app GREETING=${GREETING}
COPY --from=build /opt/app/out.txt $APP/
COPY --chown=daemon:daemon conf/ /etc/app/
RUN mkdir -p /var/spool/old && echo old > /var/spool/old/file
RUN rm /etc/hostname && rm -r /var/spool && mkdir -p /var/spool/new \\
 && echo fresh > /var/spool/new/file
LABEL org.example.stage=final
EXPOSE 8080 53/udp
HEALTHCHECK --interval=5s --retries=2 CMD true
USER daemon
CMD ["sh", "-c", "cat $APP/out.txt; echo $GREETING; id -un; ls -n /etc/app; \\
ls /etc/hostname 2>&1; find /var/spool"]
"""


class Env:
    def __init__(self, state_dir: Path, busybox_rootfs: Path) -> None:
        data = state_dir / "data"
        self.state_dir = state_dir
        self.content = ContentStore(data / "content")
        self.images = ImageStore(data / "images", self.content)
        self.snapshots = OverlaySnapshotter(str(data / "snapshots"))
        self.lines: list[str] = []
        self.builder = Builder(
            self.content,
            self.images,
            self.snapshots,
            str(data / "build"),
            runtime_root=str(state_dir / "root"),
            emit=self.lines.append,
        )
        import_rootfs(self.content, self.images, str(busybox_rootfs), parse("busybox"), ["sh"])

    def config(self, name: str) -> dict[str, object]:
        manifest = json.loads(self.content.read(self.images.get(name).target.digest))
        config: dict[str, object] = json.loads(self.content.read(manifest["config"]["digest"]))
        return config

    def run(self, name: str, mounter: Mounter) -> list[str]:
        manifest = json.loads(self.content.read(self.images.get(name).target.digest))
        config = self.config(name)
        chain: str | None = None
        diff_ids = config["rootfs"]["diff_ids"]  # type: ignore[index]
        for layer, diff_id in zip(manifest["layers"], diff_ids, strict=True):
            with self.content.open(layer["digest"]) as blob:
                chain = self.snapshots.unpack(chain, blob, layer["mediaType"], diff_id)
        bundle = self.state_dir / unique("bundle")
        bundle.mkdir()
        rootfs = mounter(self.snapshots.mounts(chain, str(bundle / "c")), bundle / "rootfs")
        (bundle / "config.json").write_text(
            json.dumps(runtime_config(config, Overrides(), str(rootfs)))
        )
        out = run_cli(self.state_dir / "root", "run", "-b", str(bundle), unique())
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()


@pytest.fixture
def env(state_dir: Path, busybox_rootfs: Path) -> Env:
    return Env(state_dir, busybox_rootfs)


def make_context(root: Path) -> Path:
    ctx = root / "ctx"
    (ctx / "conf").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "hello.txt").write_text("the context")
    (ctx / "conf" / "app.conf").write_text("setting=1\n")
    (ctx / "conf" / "secret.key").write_text("do not ship\n")
    (ctx / ".dockerignore").write_text("conf/secret*\n")
    return ctx


def test_multi_stage_build_runs_and_rebuilds_from_cache(env: Env, mounter: Mounter) -> None:
    ctx = make_context(env.state_dir)
    first = env.builder.build(
        BuildOptions(str(ctx), tags=["app:1"], build_args={"GREETING": "hello"})
    )
    assert first.cached == 0
    config = env.config("app:1")
    inner = config["config"]
    assert isinstance(inner, dict)
    assert inner["User"] == "daemon"
    assert inner["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert inner["Labels"] == {"org.example.stage": "final"}
    assert inner["Healthcheck"] == {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 5_000_000_000,
        "Retries": 2,
    }
    assert "GREETING=hello" in inner["Env"]

    lines = env.run("app:1", mounter)
    assert lines[0] == "built from the context"
    assert lines[1] == "hello"
    assert lines[2] == "daemon"
    listing = [line for line in lines if "app.conf" in line or "secret" in line]
    assert len(listing) == 1 and " 1 " in listing[0]  # owned by daemon (uid 1), secret ignored
    assert "No such file or directory" in next(line for line in lines if "hostname" in line)
    assert lines[-3:] == ["/var/spool", "/var/spool/new", "/var/spool/new/file"]

    # The unused stage (its COPY would fail) was never built.
    assert not any("not-in-context" in line for line in env.lines)

    # Nothing changed: every step from the cache, the very same image.
    env.lines.clear()
    second = env.builder.build(
        BuildOptions(str(ctx), tags=["app:2"], build_args={"GREETING": "hello"})
    )
    assert second.image_id == first.image_id
    assert second.manifest.digest == first.manifest.digest
    runnable = second.steps - 3  # the FROMs and the ARG are not cached steps
    assert second.cached == runnable, env.lines

    # A changed input rebuilds from the step that reads it.
    (ctx / "hello.txt").write_text("a new context")
    env.lines.clear()
    third = env.builder.build(
        BuildOptions(str(ctx), tags=["app:3"], build_args={"GREETING": "hello"})
    )
    assert third.image_id != first.image_id
    assert 0 < third.cached < runnable
    assert env.run("app:3", mounter)[0] == "built from a new context"
    assert env.content.fsck() == []


def test_failing_run_names_the_step_and_leaves_nothing_mounted(env: Env) -> None:
    ctx = env.state_dir / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo about to fail; exit 3\n")
    with pytest.raises(BuildError, match=r"Dockerfile:2: .*returned a non-zero code: 3"):
        env.builder.build(BuildOptions(str(ctx), tags=["bad"]))
    assert "about to fail\n" in env.lines
    work = Path(env.builder.work_dir)
    assert [p.name for p in work.iterdir()] == ["cache"]


def test_add_unpacks_archives_and_scratch_images(env: Env, mounter: Mounter) -> None:
    ctx = env.state_dir / "ctx"
    (ctx / "payload").mkdir(parents=True)
    (ctx / "payload" / "a.txt").write_text("from the archive\n")
    with tarfile.open(ctx / "payload.tar.gz", "w:gz") as tar:
        tar.add(ctx / "payload" / "a.txt", arcname="inner/a.txt")
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nADD payload.tar.gz /data/\nCOPY --from=busybox /bin/busybox /bin/\n"
        'ENTRYPOINT ["/bin/busybox"]\nCMD ["cat", "/data/inner/a.txt"]\n'
    )
    result = env.builder.build(BuildOptions(str(ctx), tags=["tiny"]))
    assert result.cached == 0
    assert env.run("tiny", mounter) == ["from the archive"]
    config = env.config("tiny")
    assert len(config["rootfs"]["diff_ids"]) == 2  # type: ignore[index]


def test_errors_name_the_line(env: Env) -> None:
    ctx = env.state_dir / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY missing.txt /\n")
    with pytest.raises(BuildError, match=r"Dockerfile:2: COPY: missing.txt: not found"):
        env.builder.build(BuildOptions(str(ctx)))
    (ctx / "Dockerfile").write_text("FROM nosuchimage:1\n")
    with pytest.raises(BuildError, match=r"Dockerfile:1: FROM nosuchimage:1: no such image"):
        env.builder.build(BuildOptions(str(ctx)))
    assert os.listdir(env.builder.work_dir) == ["cache"]


def test_config_instructions_follow_docker(env: Env) -> None:
    ctx = env.state_dir / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "ARG VERSION=1.0\n"
        "FROM busybox AS base\n"
        "ARG VERSION\n"
        'LABEL version="$VERSION" unset="${NOT_SET:-fallback}"\n'
        "ENV PATH=/opt/bin:$PATH\n"
        "WORKDIR app\n"
        "WORKDIR sub\n"
        "STOPSIGNAL SIGINT\n"
        "FROM base AS second\n"
        "LABEL scope=$VERSION\n"  # a global ARG is not in scope until declared
        'ENTRYPOINT ["/bin/echo"]\n'  # the inherited Cmd ["sh"] is reset
        "VOLUME /data /cache\n"
        "FROM second AS third\n"
        'CMD ["x"]\n'
        'ENTRYPOINT ["/bin/true"]\n'  # Cmd set in this stage survives
    )
    env.builder.build(BuildOptions(str(ctx), tags=["cfg:base"], target="base"))
    base = env.config("cfg:base")["config"]
    assert isinstance(base, dict)
    assert base["Labels"] == {"version": "1.0", "unset": "fallback"}
    assert base["Env"][0].startswith("PATH=/opt/bin:/usr/local/sbin")
    assert base["WorkingDir"] == "/app/sub"
    assert base["StopSignal"] == "SIGINT"

    env.builder.build(BuildOptions(str(ctx), tags=["cfg:second"], target="second"))
    second = env.config("cfg:second")["config"]
    assert isinstance(second, dict)
    assert second["Labels"]["scope"] == ""
    assert second["Entrypoint"] == ["/bin/echo"] and "Cmd" not in second
    assert second["Volumes"] == {"/data": {}, "/cache": {}}

    env.builder.build(BuildOptions(str(ctx), tags=["cfg:third"]))
    third = env.config("cfg:third")["config"]
    assert isinstance(third, dict)
    assert third["Cmd"] == ["x"] and third["Entrypoint"] == ["/bin/true"]

    history = env.config("cfg:base")["history"]
    assert isinstance(history, list)
    assert [h["created_by"] for h in history[-5:]] == [
        'LABEL version="$VERSION" unset="${NOT_SET:-fallback}"',
        "ENV PATH=/opt/bin:$PATH",
        "WORKDIR /app",
        "WORKDIR /app/sub",
        "STOPSIGNAL SIGINT",
    ]
    assert [h.get("empty_layer", False) for h in history[-5:]] == [True, True, False, False, True]


def test_syntax_errors_and_unsupported_instructions_are_refused(env: Env) -> None:
    ctx = env.state_dir / "ctx"
    ctx.mkdir()
    for text, message in [
        ("FROM busybox\nFROB x\n", r"Dockerfile:2: .*unknown instruction"),
        ("RUN true\n", r"Dockerfile:1: "),
        ("FROM busybox\nONBUILD RUN true\n", r"Dockerfile:2: ONBUILD: .*not supported"),
        ("FROM busybox\nRUN --mount=type=cache,target=/x true\n", r"--mount is not supported"),
        ("FROM busybox\nCOPY a\n", r"Dockerfile:2: COPY: needs at least one source"),
        ("FROM busybox AS a\nFROM a\nCOPY --from=b /x /y\n", r"--from=b: .*no such image"),
    ]:
        (ctx / "Dockerfile").write_text(text)
        with pytest.raises(BuildError, match=message):
            env.builder.build(BuildOptions(str(ctx)))
