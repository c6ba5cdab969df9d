"""The health check's pure parts: config merge/validation/defaults, the state machine
with time passed in, the probe loop with fakes, and the run flags' body."""

from __future__ import annotations

import threading
import time

import pytest

from agent.containers.spec import SpecError, oci_config, parse_create
from agent.health import (
    HEALTHY,
    STARTING,
    UNHEALTHY,
    HealthConfig,
    HealthConfigError,
    HealthState,
    Monitor,
    Result,
    Target,
    apply,
    check,
    merge,
    next_delay,
    stopped,
)
from agent.health.config import format_duration
from agent.health.state import MAX_OUTPUT, capped, parse_rfc3339, rfc3339, timed_out
from orchestr.cli.runspec import create_body, defaults, duration_ns, ulimits
from orchestr.errors import OrchestrError

MS = 1_000_000
S = 1_000_000_000


def config(**kw: object) -> HealthConfig:
    doc = {"Test": ["CMD-SHELL", "true"], **kw}
    out = HealthConfig.from_api(doc)
    assert out is not None
    return out


def result(start: float, code: int) -> Result:
    return Result(start, start + 0.01, code, "")


# -- config


def test_defaults_are_dockerds() -> None:
    c = config()
    assert (c.interval, c.timeout, c.start_period, c.start_interval, c.retries) == (
        30.0,
        30.0,
        0.0,
        5.0,
        3,
    )
    assert c.argv == ["/bin/sh", "-c", "true"]
    assert config(Test=["CMD", "ls", "-l"]).argv == ["ls", "-l"]
    c = config(Interval=200 * MS, Timeout=S, StartPeriod=2 * S, StartInterval=50 * MS, Retries=2)
    assert (c.interval, c.timeout, c.start_period, c.start_interval, c.retries) == (
        0.2,
        1.0,
        2.0,
        0.05,
        2,
    )


def test_nothing_to_probe() -> None:
    assert HealthConfig.from_api(None) is None
    assert HealthConfig.from_api({"Test": ["NONE"]}) is None
    assert HealthConfig.from_api({"Test": []}) is None
    assert HealthConfig.from_api({"Test": ["CMD"]}) is None


def test_merge_with_the_images_check() -> None:
    image = {"Test": ["CMD-SHELL", "img"], "Interval": 5 * S, "Retries": 7}
    assert merge(None, image) == image
    assert merge({"Test": ["NONE"]}, image)["Test"] == ["NONE"]  # type: ignore[index]
    merged = merge({"Test": [], "Interval": S, "Timeout": 2 * S}, image)
    assert merged == {
        "Test": ["CMD-SHELL", "img"],
        "Interval": S,
        "Timeout": 2 * S,
        "StartPeriod": 0,
        "StartInterval": 0,
        "Retries": 7,
    }
    mine = merge({"Test": ["CMD", "mine"]}, image)
    assert mine is not None and mine["Test"] == ["CMD", "mine"] and mine["Retries"] == 7
    assert merge({"Test": ["CMD", "x"]}, None) == {"Test": ["CMD", "x"]}
    assert merge(None, None) is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"Interval": 1000}, "Interval in Healthcheck cannot be less than 1ms"),
        ({"Timeout": 5}, "Timeout in Healthcheck cannot be less than 1ms"),
        ({"StartPeriod": 10}, "StartPeriod in Healthcheck cannot be less than 1ms"),
        ({"StartInterval": 10}, "StartInterval in Healthcheck cannot be less than 1ms"),
        ({"Retries": -1}, "Retries in Healthcheck cannot be negative"),
        ({"Test": ["SHELL", "x"]}, "unknown type"),
        ({"Interval": "1s"}, "expected an integer"),
    ],
)
def test_validation_as_dockerd(doc: dict[str, object], message: str) -> None:
    with pytest.raises(HealthConfigError, match=message):
        check(doc)
    with pytest.raises(SpecError, match=message):
        parse_create({"Image": "busybox", "Healthcheck": doc})


def test_valid_checks_pass() -> None:
    assert check(None) is None
    assert check({"Test": ["CMD", "true"], "Interval": MS, "Retries": 0}) is not None
    spec = parse_create({"Image": "b", "Healthcheck": {"Test": ["NONE"]}})
    assert spec.healthcheck == {"Test": ["NONE"]}


def test_on_failure_label() -> None:
    label = "org.orchestr.health.on-failure"
    assert parse_create({"Image": "b"}).health_on_failure == "none"
    assert parse_create({"Image": "b", "Labels": {label: "restart"}}).health_on_failure == (
        "restart"
    )
    with pytest.raises(SpecError, match="must be one of none, restart, stop, kill"):
        parse_create({"Image": "b", "Labels": {label: "reboot"}})


def test_go_durations() -> None:
    assert format_duration(30) == "30s"
    assert format_duration(0.2) == "200ms"
    assert format_duration(1.5) == "1.5s"
    assert format_duration(90) == "1m30s"
    assert format_duration(60) == "1m0s"
    assert format_duration(3600) == "1h0m0s"
    assert duration_ns("1m30s", "--x") == 90 * S
    assert duration_ns("200ms", "--x") == 200 * MS
    with pytest.raises(OrchestrError, match="invalid duration"):
        duration_ns("5 minutes", "--health-interval")
    with pytest.raises(OrchestrError, match="cannot be negative"):
        duration_ns("-1s", "--health-interval")


# -- the state machine


def test_success_makes_healthy_and_failures_make_unhealthy_at_retries() -> None:
    c = config(Retries=3)
    s = HealthState()
    assert s.status == STARTING
    s = apply(s, c, result(100, 0), started_at=0)
    assert (s.status, s.failing_streak) == (HEALTHY, 0)
    for n in (1, 2):
        s = apply(s, c, result(100 + n, 1), started_at=0)
        assert (s.status, s.failing_streak) == (HEALTHY, n)
    s = apply(s, c, result(103, 2), started_at=0)
    assert (s.status, s.failing_streak) == (UNHEALTHY, 3)
    s = apply(s, c, result(104, -1), started_at=0)
    assert (s.status, s.failing_streak) == (UNHEALTHY, 4)
    s = apply(s, c, result(105, 0), started_at=0)
    assert (s.status, s.failing_streak) == (HEALTHY, 0)


def test_starting_goes_unhealthy_without_a_success() -> None:
    c = config(Retries=1)
    s = apply(HealthState(), c, result(40, 1), started_at=0)
    assert (s.status, s.failing_streak) == (UNHEALTHY, 1)


def test_start_period_failures_do_not_count_while_starting() -> None:
    c = config(StartPeriod=10 * S, Retries=1)
    s = apply(HealthState(), c, result(5, 1), started_at=0)
    assert (s.status, s.failing_streak) == (STARTING, 0)
    s = apply(s, c, result(10.5, 1), started_at=0)  # past the start period: counts
    assert (s.status, s.failing_streak) == (UNHEALTHY, 1)
    # once healthy, failures count even inside the start period
    s = apply(HealthState(), c, result(1, 0), started_at=0)
    s = apply(s, c, result(2, 1), started_at=0)
    assert (s.status, s.failing_streak) == (UNHEALTHY, 1)


def test_the_log_keeps_five() -> None:
    c = config()
    s = HealthState()
    for n in range(8):
        s = apply(s, c, result(n, n % 2), started_at=0)
    assert [r.start for r in s.log] == [3, 4, 5, 6, 7]
    doc = s.to_api()
    assert set(doc) == {"Status", "FailingStreak", "Log"}
    assert set(doc["Log"][0]) == {"Start", "End", "ExitCode", "Output"}
    assert HealthState.from_api(doc) == s


def test_intervals() -> None:
    c = config(Interval=30 * S, StartPeriod=60 * S, StartInterval=5 * S)
    starting = HealthState()
    assert next_delay(c, starting, now=0, started_at=0) == 5  # first probe, start period
    assert next_delay(c, starting, now=59, started_at=0) == 5
    assert next_delay(c, starting, now=60, started_at=0) == 30  # start period over
    healthy = HealthState(HEALTHY)
    assert next_delay(c, healthy, now=1, started_at=0) == 30  # first success: interval
    plain = config(Interval=200 * MS)
    assert next_delay(plain, starting, now=0, started_at=0) == 0.2


def test_restart_and_stop() -> None:
    s = HealthState(UNHEALTHY, 4, (result(1, 1),))
    assert s.restarted() == HealthState(STARTING, 0, s.log)
    assert stopped(HealthState(HEALTHY, 0, s.log)) == HealthState(UNHEALTHY, 0, s.log)


def test_output_cap_and_timeout_message() -> None:
    assert capped(b"ok\n") == "ok\n"
    big = capped(b"x" * (MAX_OUTPUT + 10))
    assert big == "x" * MAX_OUTPUT + "..."
    c = config(Timeout=500 * MS)
    assert timed_out(c, "") == "Health check exceeded timeout (500ms)"
    assert timed_out(c, "partial") == "Health check exceeded timeout (500ms): partial"


def test_times_round_trip() -> None:
    t = 1_700_000_000.123456
    text = rfc3339(t)
    assert text.startswith("2023-11-14T22:13:20.123456") and text.endswith("Z")
    assert abs(parse_rfc3339(text) - t) < 1e-6


# -- the monitor, with fakes


def test_monitor_probes_on_schedule_and_stops_on_unwatch() -> None:
    c = config(Interval=20 * MS, Retries=2)
    seen: list[Result] = []
    states: dict[str, HealthState] = {"c1": HealthState()}
    done = threading.Event()

    def probe(target: Target) -> Result:
        now = time.time()
        return Result(now, now, 1, "no")

    def report(target: Target, r: Result) -> HealthState | None:
        seen.append(r)
        states["c1"] = apply(states["c1"], target.config, r, target.started_at)
        if len(seen) >= 3:
            done.set()
        return states["c1"]

    monitor = Monitor(probe, report)
    started = time.time()
    monitor.watch("c1", c, started, HealthState())
    assert done.wait(5)
    monitor.unwatch("c1")
    count = len(seen)
    time.sleep(0.1)
    assert len(seen) <= count + 1  # at most the one in flight
    assert states["c1"].status == UNHEALTHY
    assert seen[0].start - started >= 0.015  # the first probe waits one interval
    monitor.close()


def test_monitor_drops_a_watch_whose_report_says_stop() -> None:
    calls: list[str] = []

    def probe(target: Target) -> Result:
        calls.append(target.container_id)
        return Result(0, 0, 0, "")

    monitor = Monitor(probe, lambda t, r: None)
    monitor.watch("c2", config(Interval=10 * MS), time.time(), HealthState())
    deadline = time.monotonic() + 5
    while monitor.watching("c2"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.05)
    assert calls == ["c2"]
    monitor.close()


# -- run flags, init and ulimits in the spec


def _opts(**kw: object) -> dict[str, object]:
    return {**defaults(), **kw}


def test_run_flags_make_the_healthcheck() -> None:
    body = create_body(
        "busybox",
        (),
        _opts(
            health_cmd="test -f /ok",
            health_interval="200ms",
            health_timeout="1s",
            health_retries=2,
            health_start_period="3s",
            health_start_interval="100ms",
        ),
    )
    assert body["Healthcheck"] == {
        "Test": ["CMD-SHELL", "test -f /ok"],
        "Interval": 200 * MS,
        "Timeout": S,
        "StartPeriod": 3 * S,
        "StartInterval": 100 * MS,
        "Retries": 2,
    }
    assert create_body("b", (), _opts(no_healthcheck=True))["Healthcheck"] == {"Test": ["NONE"]}
    assert "Healthcheck" not in create_body("b", (), _opts())
    with pytest.raises(OrchestrError, match="conflicts"):
        create_body("b", (), _opts(no_healthcheck=True, health_cmd="true"))
    only_interval = create_body("b", (), _opts(health_interval="1s"))["Healthcheck"]
    assert only_interval["Test"] == [] and only_interval["Interval"] == S


def test_run_flags_init_and_ulimits() -> None:
    body = create_body("b", (), _opts(init=True, ulimits=("nofile=1024:2048", "nproc=50")))
    assert body["HostConfig"]["Init"] is True
    assert body["HostConfig"]["Ulimits"] == [
        {"Name": "nofile", "Soft": 1024, "Hard": 2048},
        {"Name": "nproc", "Soft": 50, "Hard": 50},
    ]
    with pytest.raises(OrchestrError, match="invalid ulimit type: bogus"):
        ulimits(["bogus=1"])
    with pytest.raises(OrchestrError, match="soft limit must be less than or equal"):
        ulimits(["nofile=10:5"])


def test_init_and_ulimits_in_the_oci_config() -> None:
    spec = parse_create(
        {
            "Image": "b",
            "Cmd": ["ps"],
            "HostConfig": {
                "Init": True,
                "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
            },
        }
    )
    config = oci_config(
        spec, {"config": {}}, "/r", hostname="h", mounts=[], cgroups_path="/x", init_binary="/t"
    )
    assert config["process"]["args"] == ["/sbin/docker-init", "--", "ps"]
    assert {
        "destination": "/sbin/docker-init",
        "type": "bind",
        "source": "/t",
        "options": ["bind", "ro"],
    } in config["mounts"]
    assert config["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}]
    plain = oci_config(
        parse_create({"Image": "b", "Cmd": ["ps"]}),
        {"config": {}},
        "/r",
        hostname="h",
        mounts=[],
        cgroups_path="/x",
    )
    assert plain["process"]["args"] == ["ps"] and "rlimits" not in plain["process"]


@pytest.mark.parametrize(
    ("ulimit", "message"),
    [
        ({"Name": "bogus", "Soft": 1, "Hard": 1}, "invalid ulimit type: bogus"),
        ({"Name": "nofile", "Soft": 9, "Hard": 1}, "soft limit must be less than or equal"),
    ],
)
def test_bad_ulimits_are_refused(ulimit: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_create({"Image": "b", "HostConfig": {"Ulimits": [ulimit]}})


def test_a_missing_init_names_the_package() -> None:
    from agent.containers.service import ContainerService

    service = ContainerService.__new__(ContainerService)
    service.init_binary = "/nonexistent/tini-static"
    with pytest.raises(SpecError, match=r"install the Debian package tini"):
        service._check_init()
