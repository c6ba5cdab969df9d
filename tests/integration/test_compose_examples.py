"""The example stacks of examples/stacks, brought up with `orchestr up --wait` by a daemon
in a test host, checked over HTTP from that host, and taken down leaving nothing; the
ordering of depends_on conditions read off the containers' inspect timestamps; bad
stacks refused in one line, creating nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import Daemon, unique
from tests.integration.test_daemon_images import docker_cli
from tests.integration.test_daemon_networks import host_of, net

__all__ = ["net"]  # the fixture, imported for this module's tests

pytestmark = [pytest.mark.root, pytest.mark.netns]

ORCHESTR = str(Path(sys.executable).with_name("orchestr"))
STACKS = Path(__file__).resolve().parents[2] / "examples" / "stacks"


def orchestr(d: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = host_of(d).run(ORCHESTR, *args, env=d.env(), timeout=180)
    if check:
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


FETCH = (
    "import sys, urllib.request; "
    "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
)


def get(d: Daemon, url: str, *, ok: bool = True) -> str:
    """GET url from inside the test host (its loopback, its networks)."""
    done = host_of(d).run(sys.executable, "-c", FETCH, url)
    if ok:
        assert done.returncode == 0, f"{url}: {done.stderr}"
    return done.stdout if done.returncode == 0 else ""


def inspect(d: Daemon, name: str) -> dict[str, object]:
    return json.loads(docker_cli(d, "inspect", name).stdout)[0]  # type: ignore[no-any-return]


def when(text: str) -> float:
    return datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00").timestamp()


def left_over(d: Daemon, project: str) -> list[str]:
    label = f"label=com.docker.compose.project={project}"
    found = docker_cli(d, "ps", "-aq", "--filter", label).stdout.split()
    found += docker_cli(d, "network", "ls", "-q", "--filter", label).stdout.split()
    found += docker_cli(d, "volume", "ls", "-q", "--filter", label).stdout.split()
    return found


def test_webapp_comes_up_in_order_and_converges(net: Daemon) -> None:
    stack = str(STACKS / "webapp" / "compose.yaml")
    orchestr(net, "up", "-f", stack, "--wait", "--wait-timeout", "90")
    page = get(net, "http://127.0.0.1:8080/cgi-bin/front")
    assert "items: apple banana cherry" in page  # migrate ran, the API serves it
    assert "worker: 1" in page  # a heartbeat (a unix time) written by the worker
    # ordering, from inspect: migrate exited 0 before the API started; the API was
    # healthy before the front and the worker started
    migrate, api = inspect(net, "webapp-migrate-1"), inspect(net, "webapp-api-1")
    front, worker = inspect(net, "webapp-front-1"), inspect(net, "webapp-worker-1")
    assert migrate["State"]["ExitCode"] == 0  # type: ignore[index]
    assert when(migrate["State"]["FinishedAt"]) <= when(api["State"]["StartedAt"])  # type: ignore[index]
    healthy_at = min(
        when(probe["End"])
        for probe in api["State"]["Health"]["Log"]  # type: ignore[index]
        if probe["ExitCode"] == 0
    )
    for dependent in (front, worker):
        assert healthy_at <= when(dependent["State"]["StartedAt"])  # type: ignore[index]
    # nothing changed: nothing is touched
    ids = {n: inspect(net, n)["Id"] for n in ("webapp-api-1", "webapp-front-1")}
    orchestr(net, "up", "-f", stack, "-d")
    assert {n: inspect(net, n)["Id"] for n in ids} == ids
    ps = orchestr(net, "compose", "-f", stack, "ps").stdout
    assert "webapp-front-1" in ps and "(healthy)" in ps
    orchestr(net, "down", "-f", stack, "-v", "-t", "1")
    assert left_over(net, "webapp") == []


def test_multinet_keeps_the_db_on_its_internal_network(net: Daemon) -> None:
    stack = str(STACKS / "multinet" / "compose.yaml")
    orchestr(net, "up", "-f", stack, "--wait", "--wait-timeout", "90")
    assert "rows: 42" in get(net, "http://127.0.0.1:8081/cgi-bin/front")
    db = inspect(net, "multinet-db-1")
    networks = db["NetworkSettings"]["Networks"]  # type: ignore[index]
    assert list(networks) == ["multinet_back"]
    # internal: the db has no route out of its network (not even to the front network)
    routes = orchestr(net, "compose", "-f", stack, "exec", "-T", "db", "ip", "route").stdout
    assert "default" not in routes
    front_gateway = json.loads(docker_cli(net, "network", "inspect", "multinet_front").stdout)[0][
        "IPAM"
    ]["Config"][0]["Gateway"]

    def from_db(url: str) -> subprocess.CompletedProcess[str]:
        # busybox wget -T segfaults here (MACHINE-NOTES): `timeout` bounds it instead
        return orchestr(net, "compose", "-f", stack, "exec", "-T", "db",
                        "timeout", "5", "wget", "-qO-", url, check=False)  # fmt: skip

    assert "ok" in from_db("http://gateway/health").stdout  # the proxy, on back: reachable
    refused = from_db(f"http://{front_gateway}:8081/")
    assert refused.returncode == 1, refused  # wget's failure, not a crash or a timeout
    assert "unreachable" in refused.stderr.lower(), refused.stderr
    out = docker_cli(net, "network", "inspect", "multinet_back").stdout
    assert json.loads(out)[0]["Internal"] is True
    orchestr(net, "down", "-f", stack, "-t", "1")
    assert left_over(net, "multinet") == []


def test_data_volume_outlives_down_and_secrets_are_mounted(net: Daemon) -> None:
    stack = str(STACKS / "data" / "compose.yaml")
    orchestr(net, "up", "-f", stack, "--wait", "--wait-timeout", "90")
    first = get(net, "http://127.0.0.1:8082/cgi-bin/store")
    assert "starts: 1" in first
    assert "config: mode=example" in first
    assert "static: hello from a bind mount" in first
    secret = (STACKS / "data" / "api_key.txt").read_bytes()
    import hashlib

    assert f"secret: {hashlib.sha256(secret).hexdigest()[:12]}" in first
    orchestr(net, "down", "-f", stack, "-t", "1")
    orchestr(net, "up", "-f", stack, "--wait", "--wait-timeout", "90")
    assert "starts: 2" in get(net, "http://127.0.0.1:8082/cgi-bin/store")  # the volume stayed
    orchestr(net, "down", "-f", stack, "-v", "-t", "1")
    assert left_over(net, "data") == []


BAD = {
    "cycle": ("services:\n  a: {image: busybox, depends_on: [b]}\n"
              "  b: {image: busybox, depends_on: [a]}\n", "dependency cycle: a → b → a", 2),
    "network": ("services:\n  a:\n    image: busybox\n    networks: [nope]\n",
                "undefined network 'nope'", 4),
    "yaml": ("services:\n  a:\n    image: busybox\n   bad: [\n", "stack.yaml:4", 4),
    "key": ("services:\n  a:\n    image: busybox\n    imgae: x\n", "unknown key 'imgae'", 4),
    "variable": ("services:\n  a:\n    image: ${IMAGE:?set IMAGE}\n", "set IMAGE", 3),
    "image": ("services:\n  a:\n    image: no-such-image:1\n", "no-such-image:1", None),
    "failed-job": ("services:\n  job: {image: busybox, command: [sh, -c, 'exit 3']}\n"
                   "  web:\n    image: busybox\n    command: [sleep, '30']\n"
                   "    depends_on: {job: {condition: service_completed_successfully}}\n",
                   "service 'job' didn't complete successfully: exit 3", None),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_stacks_are_one_line_and_create_nothing(net: Daemon, tmp_path: Path, case: str) -> None:
    text, message, line = BAD[case]
    stack = tmp_path / "stack.yaml"
    stack.write_text(text)
    project = unique("bad").replace("-", "")
    done = orchestr(net, "up", "-f", str(stack), "-p", project, "-d", check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("orchestr:")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    if line is not None:
        assert f"stack.yaml:{line}:" in errors[0]
    if case == "failed-job":  # the job ran (and failed); web was never made
        assert "web" not in docker_cli(net, "ps", "-a", "--format", "{{.Names}}").stdout
        orchestr(net, "down", "-f", str(stack), "-p", project, "-t", "0")
    assert left_over(net, project) == []
    time.sleep(0)
