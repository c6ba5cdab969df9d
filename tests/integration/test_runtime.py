"""The runtime makes real containers: namespaces, cgroups, mounts, capabilities."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.runtime import specopts as so
from agent.runtime.errors import ContainerExists, RuntimeError_, StateError
from agent.runtime.linux import cgroups
from agent.runtime.runtime import Runtime
from tests.conftest import BundleFactory, TestHost, unique

ORCHESTR = str(Path(sys.executable).parent / "orchestr")


def sh(script: str) -> so.SpecOpt:
    return so.with_args(["sh", "-c", script])


def run_cli(
    root: Path, *args: str, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """`orchestr runtime --root ROOT ARGS`, its output captured in files: a
    created container inherits stdio and would hold a pipe open."""
    return run_command([ORCHESTR, "runtime", "--root", str(root), *args], cwd=cwd, timeout=timeout)


def run_command(
    cmd: list[str], cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.run(
            cmd, stdout=out, stderr=err, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL
        )
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())


def run_in(make_bundle: BundleFactory, state_dir: Path, *opts: so.SpecOpt):
    bundle = make_bundle(*opts)
    return run_cli(state_dir / "root", "run", "-b", str(bundle), unique())


# -- exit status ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "code"),
    # pid 1 of a pid namespace gets no signal it has no handler for, even KILL.
    [("true", 0), ("exit 3", 3), ("kill -9 $$; exit 4", 4), ("kill -TERM $$; exit 5", 5)],
)
def test_run_exit_status_is_the_containers(
    make_bundle: BundleFactory, state_dir: Path, script: str, code: int
) -> None:
    result = run_in(make_bundle, state_dir, sh(script))
    assert result.returncode == code, result.stderr


def test_killed_by_signal_reports_128_plus_signal(
    make_bundle: BundleFactory, state_dir: Path
) -> None:
    import time

    root = state_dir / "root"
    cid = unique()
    bundle = make_bundle(sh("sleep 60"))
    proc = subprocess.Popen(
        [ORCHESTR, "runtime", "--root", str(root), "run", "-b", str(bundle), cid],
        stdin=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            if (
                run_cli(root, "state", cid).returncode == 0
                and '"running"' in run_cli(root, "state", cid).stdout
            ):
                break
            time.sleep(0.01)
        assert run_cli(root, "kill", cid, "SIGKILL").returncode == 0
        assert proc.wait(timeout=10) == 128 + 9
    finally:
        proc.kill()
        proc.wait()
    assert not (root / cid).exists()


# -- isolation --------------------------------------------------------------------------


def test_pid_1_and_only_its_own_processes(make_bundle: BundleFactory, state_dir: Path) -> None:
    result = run_in(make_bundle, state_dir, sh("echo $$; ls /proc | grep -c '^[0-9]'"))
    lines = result.stdout.split()
    assert lines[0] == "1"
    # sh, ls and grep: nothing of the host.
    assert int(lines[1]) <= 3, result.stdout


def test_only_lo(make_bundle: BundleFactory, state_dir: Path) -> None:
    result = run_in(
        make_bundle, state_dir, sh("ls /sys/class/net; cat /sys/class/net/lo/operstate")
    )
    assert result.stdout.split() == ["lo", "unknown"], result.stdout + result.stderr


def test_hostname_env_cwd_user(make_bundle: BundleFactory, state_dir: Path) -> None:
    result = run_in(
        make_bundle,
        state_dir,
        sh("hostname; echo $GREETING; pwd; id -u; id -g; id -G"),
        so.with_hostname("box-1"),
        so.with_env({"GREETING": "hi there"}),
        so.with_cwd("/tmp"),
        so.with_user(1000, 1001, [1002, 1003]),
    )
    assert result.stdout.splitlines() == [
        "box-1",
        "hi there",
        "/tmp",
        "1000",
        "1001",
        "1001 1002 1003",
    ], result.stderr


def test_readonly_root_refuses_writes(make_bundle: BundleFactory, state_dir: Path) -> None:
    result = run_in(make_bundle, state_dir, sh("touch /x; echo $?; touch /dev/shm/y; echo $?"))
    codes = result.stdout.split()
    assert codes[0] != "0" and "Read-only file system" in result.stderr
    assert codes[1] == "0"  # tmpfs mounts stay writable


def test_writable_root_when_not_readonly(make_bundle: BundleFactory, state_dir: Path) -> None:
    bundle = make_bundle(sh("touch /x && echo ok"), so.with_rootfs("rootfs", readonly=False))
    result = run_cli(state_dir / "root", "run", "-b", str(bundle), unique())
    assert result.stdout.strip() == "ok", result.stderr
    assert (bundle / "rootfs" / "x").exists()


def test_masked_and_readonly_paths(make_bundle: BundleFactory, state_dir: Path) -> None:
    result = run_in(
        make_bundle,
        state_dir,
        sh(
            "wc -c < /proc/timer_list; ls /proc/acpi | wc -l; "
            "echo 1 > /proc/sys/kernel/domainname && echo wrote || echo refused"
        ),
    )
    assert result.stdout.split() == ["0", "0", "refused"], result.stdout + result.stderr


def test_capabilities_are_exactly_the_bundles(make_bundle: BundleFactory, state_dir: Path) -> None:
    caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"]
    result = run_in(
        make_bundle,
        state_dir,
        sh("grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status"),
        so.with_capabilities(caps),
    )
    expected = f"{(1 << 0) | (1 << 5) | (1 << 13):016x}"
    values = [line.split()[1] for line in result.stdout.splitlines()]
    assert values == [expected] * 3, result.stdout + result.stderr


def test_non_root_user_gets_no_capabilities_but_ambient(
    make_bundle: BundleFactory, state_dir: Path
) -> None:
    result = run_in(
        make_bundle,
        state_dir,
        sh("grep -E '^CapEff' /proc/self/status"),
        so.with_user(1000, 1000),
        so.with_capabilities([]),
    )
    assert result.stdout.split()[1] == "0" * 16, result.stdout + result.stderr


# -- resources ---------------------------------------------------------------------------


def test_memory_limit_kills_and_is_detected(runtime: Runtime, make_bundle: BundleFactory) -> None:
    bundle = make_bundle(
        sh("x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived"),
        so.with_memory_limit(32 * 1024 * 1024),
    )
    result = runtime.run(unique(), str(bundle))
    assert result.code == 137
    assert result.oom_killed


def test_pids_limit_stops_a_fork_bomb(make_bundle: BundleFactory, state_dir: Path) -> None:
    result = run_in(
        make_bundle,
        state_dir,
        sh("for i in $(seq 40); do sleep 5 & done; echo survived"),
        so.with_pids_limit(10),
    )
    assert "can't fork" in result.stderr or "Resource temporarily" in result.stderr


def test_cgroup_limits_are_written(runtime: Runtime, make_bundle: BundleFactory) -> None:
    bundle = make_bundle(
        sh("sleep 30"),
        so.with_memory_limit(64 * 1024 * 1024),
        so.with_cpu(shares=512, quota=50000, period=100000),
        so.with_pids_limit(64),
    )
    cid = unique()
    c = runtime.create(cid, str(bundle))
    assert c.cgroup is not None
    if c.cgroup.unified:
        d = c.cgroup.paths[cgroups.CGROUP_ROOT]
        assert Path(d, "memory.max").read_text().strip() == str(64 * 1024 * 1024)
        assert Path(d, "cpu.max").read_text().strip() == "50000 100000"
        assert Path(d, "pids.max").read_text().strip() == "64"
    else:
        mem = c.cgroup.paths["/sys/fs/cgroup/memory"]
        cpu = c.cgroup.paths["/sys/fs/cgroup/cpu"]
        pids = c.cgroup.paths["/sys/fs/cgroup/pids"]
        assert Path(mem, "memory.limit_in_bytes").read_text().strip() == str(64 * 1024 * 1024)
        assert Path(cpu, "cpu.shares").read_text().strip() == "512"
        assert Path(cpu, "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert Path(pids, "pids.max").read_text().strip() == "64"
        assert str(c.pid) in Path(mem, "cgroup.procs").read_text().split()
    runtime.delete(cid, force=True)
    for d in c.cgroup.paths.values():
        assert not os.path.exists(d)


def test_rlimit_above_hard_limit_is_clamped_with_a_warning(
    runtime: Runtime, make_bundle: BundleFactory, state_dir: Path
) -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    config_opt = so.with_args(["sh", "-c", "ulimit -n; ulimit -Hn"])

    def big_nofile(config: dict[str, object]) -> None:
        proc = config["process"]
        assert isinstance(proc, dict)
        proc["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 4096, "hard": hard + 100000}]

    bundle = make_bundle(config_opt, big_nofile)
    out = run_cli(state_dir / "root", "run", "-b", str(bundle), unique())
    from agent.runtime.linux import caps

    if caps.has_capability(caps.CAP_SYS_RESOURCE):
        assert out.stdout.split() == ["4096", str(hard + 100000)]
    else:
        assert out.stdout.split() == [str(min(4096, hard)), str(hard)], out.stderr
        assert "clamped" in out.stderr


def test_sysctl_in_the_containers_namespace(make_bundle: BundleFactory, state_dir: Path) -> None:
    def sysctl(config: dict[str, object]) -> None:
        linux = config["linux"]
        assert isinstance(linux, dict)
        linux["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "2048"}

    result = run_in(
        make_bundle,
        state_dir,
        sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni"),
        sysctl,
    )
    assert result.stdout.split() == ["1", "2048"], result.stderr


# -- namespaces by path -------------------------------------------------------------------


@pytest.mark.netns
def test_joins_a_network_namespace_by_path(
    make_bundle: BundleFactory, state_dir: Path, testhost: TestHost
) -> None:
    testhost.run("ip", "addr", "add", "10.199.0.1/32", "dev", "lo", check=True)
    result = run_in(
        make_bundle,
        state_dir,
        sh("ip -o -4 addr show lo"),
        so.with_namespace("network", testhost.path),
    )
    assert "10.199.0.1/32" in result.stdout, result.stdout + result.stderr


# -- lifecycle -------------------------------------------------------------------------


def test_create_start_state_kill_delete(make_bundle: BundleFactory, state_dir: Path) -> None:
    import json

    root = state_dir / "root"
    bundle = make_bundle(sh("echo started > /dev/shm/x; sleep 60"))
    cid = unique()
    pid_file = state_dir / "pid"
    out = run_cli(root, "create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid)
    assert out.returncode == 0, out.stderr
    state = json.loads(run_cli(root, "state", cid).stdout)
    assert state["status"] == "created"
    assert state["id"] == cid and state["bundle"] == str(bundle)
    assert state["pid"] == int(pid_file.read_text())
    listing = run_cli(root, "list").stdout
    assert cid in listing and "created" in listing
    assert run_cli(root, "start", cid).returncode == 0
    assert json.loads(run_cli(root, "state", cid).stdout)["status"] == "running"
    again = run_cli(root, "start", cid)
    assert again.returncode == 1 and "not created" in again.stderr
    refused = run_cli(root, "delete", cid)
    assert refused.returncode == 1 and "not stopped" in refused.stderr
    assert run_cli(root, "kill", cid, "KILL").returncode == 0
    for _ in range(200):
        if json.loads(run_cli(root, "state", cid).stdout)["status"] == "stopped":
            break
    assert json.loads(run_cli(root, "state", cid).stdout)["status"] == "stopped"
    assert run_cli(root, "delete", cid).returncode == 0
    gone = run_cli(root, "state", cid)
    assert gone.returncode == 1 and "does not exist" in gone.stderr


def test_delete_of_a_created_container_kills_it(
    runtime: Runtime, make_bundle: BundleFactory
) -> None:
    cid = unique()
    c = runtime.create(cid, str(make_bundle(sh("true"))))
    assert c.status() == "created"
    runtime.delete(cid)
    assert not c.alive()
    assert runtime.list() == []


def test_duplicate_id_is_refused(runtime: Runtime, make_bundle: BundleFactory) -> None:
    cid = unique()
    runtime.create(cid, str(make_bundle(sh("true"))))
    with pytest.raises(ContainerExists, match="already exists"):
        runtime.create(cid, str(make_bundle(sh("true"))))
    runtime.delete(cid)


def test_exec_joins_every_namespace_and_the_cgroup(
    runtime: Runtime, make_bundle: BundleFactory, state_dir: Path
) -> None:
    bundle = make_bundle(sh("sleep 60"), so.with_hostname("exec-box"))
    cid = unique()
    runtime.run(cid, str(bundle), detach=True)
    out = run_cli(
        state_dir / "runtime-root",
        "exec",
        "--env",
        "EXTRA=yes",
        cid,
        "sh",
        "-c",
        "hostname; echo $EXTRA; ls /proc | grep -c '^[0-9]'; "
        '[ "$(cat /proc/self/cgroup)" = "$(cat /proc/1/cgroup)" ] && echo same-cgroup; exit 4',
    )
    lines = out.stdout.splitlines()
    assert out.returncode == 4, out.stderr
    assert lines[0] == "exec-box" and lines[1] == "yes"
    assert int(lines[2]) <= 5  # sleep, sh, ls, grep (+ the container's sh)
    assert lines[3] == "same-cgroup"
    runtime.kill(cid, 9)
    runtime.delete(cid, force=True)


def test_exec_in_a_stopped_container_is_refused(
    runtime: Runtime, make_bundle: BundleFactory
) -> None:
    cid = unique()
    runtime.run(cid, str(make_bundle(sh("true"))), keep=True)
    with pytest.raises(StateError, match="stopped"):
        runtime.exec(cid, {"args": ["true"], "cwd": "/"})
    runtime.delete(cid)


def test_pause_and_resume(runtime: Runtime, make_bundle: BundleFactory) -> None:
    cid = unique()
    runtime.run(cid, str(make_bundle(sh("sleep 60"))), detach=True)
    runtime.pause(cid)
    assert runtime.state(cid)["status"] == "paused"
    runtime.resume(cid)
    assert runtime.state(cid)["status"] == "running"
    runtime.delete(cid, force=True)


# -- bad bundles -------------------------------------------------------------------------


def _leaves_nothing(root: Path, cid: str) -> None:
    assert not (root / cid).exists()
    for h in cgroups.hierarchies():
        assert not os.path.exists(os.path.join(h.mountpoint, "orchestr", cid))


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("no-config", "config.json: no such file"),
        ("bad-json", "invalid JSON"),
        ("schema", "process.args"),
        ("no-rootfs", "root.path"),
        ("bad-namespace", "linux.namespaces[6].type"),
        ("missing-binary", 'exec: "no-such-program": executable file not found in $PATH'),
        ("bad-mount", "mount"),
    ],
)
def test_bad_bundles_fail_with_one_clear_line(
    make_bundle: BundleFactory, state_dir: Path, breakage: str, message: str
) -> None:
    import json

    bundle = make_bundle(sh("true"))
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    if breakage == "no-config":
        config_path.unlink()
    elif breakage == "bad-json":
        config_path.write_text('{"ociVersion": "1.0.2", ')
    elif breakage == "schema":
        config["process"]["args"] = "sh -c true"
        config_path.write_text(json.dumps(config))
    elif breakage == "no-rootfs":
        config["root"]["path"] = "no-such-rootfs"
        config_path.write_text(json.dumps(config))
    elif breakage == "bad-namespace":
        config["linux"]["namespaces"].append({"type": "weird"})
        config_path.write_text(json.dumps(config))
    elif breakage == "missing-binary":
        config["process"]["args"] = ["no-such-program"]
        config_path.write_text(json.dumps(config))
    elif breakage == "bad-mount":
        config["mounts"].append({"destination": "/mnt", "type": "nosuchfs", "source": "x"})
        config_path.write_text(json.dumps(config))
    root = state_dir / "root"
    cid = unique()
    out = run_cli(root, "create", "-b", str(bundle), cid)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in out.stderr
    _leaves_nothing(root, cid)


def test_failed_create_in_the_library_leaves_nothing(
    runtime: Runtime, make_bundle: BundleFactory
) -> None:
    cid = unique()
    with pytest.raises(RuntimeError_, match="executable file not found"):
        runtime.create(cid, str(make_bundle(so.with_args(["nope"]))))
    _leaves_nothing(Path(runtime.root), cid)


# -- seccomp -----------------------------------------------------------------------------


def with_seccomp(profile: dict[str, object]) -> so.SpecOpt:
    def opt(config: dict[str, object]) -> None:
        linux = config["linux"]
        assert isinstance(linux, dict)
        linux["seccomp"] = profile

    return opt


def test_seccomp_profile_applies_to_the_container_and_exec(
    runtime: Runtime, make_bundle: BundleFactory, state_dir: Path
) -> None:
    deny_mkdir = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        ],
    }
    bundle = make_bundle(
        sh("mkdir /dev/shm/d && echo made || echo refused; sleep 30"), with_seccomp(deny_mkdir)
    )
    cid = unique()
    out_path = state_dir / "out"
    with open(out_path, "w") as out:
        runtime.create(cid, str(bundle), stdio=(0, out.fileno(), out.fileno()))
    runtime.start(cid)
    for _ in range(300):
        if "refused" in out_path.read_text() or "made" in out_path.read_text():
            break
        import time

        time.sleep(0.01)
    assert "refused" in out_path.read_text()
    result = run_cli(
        state_dir / "runtime-root", "exec", cid, "sh", "-c", "mkdir /dev/shm/e || exit 9"
    )
    assert result.returncode == 9
    runtime.delete(cid, force=True)


def test_docker_default_seccomp_profile_runs_a_shell(
    make_bundle: BundleFactory, state_dir: Path
) -> None:
    from agent.runtime.linux.seccomp_default import default_profile

    result = run_in(
        make_bundle,
        state_dir,
        sh("echo fine; unshare -n true 2>/dev/null || echo no-unshare"),
        with_seccomp(default_profile()),
    )
    assert result.stdout.split() == ["fine", "no-unshare"], result.stderr


def test_bad_seccomp_profile_fails_create(make_bundle: BundleFactory, state_dir: Path) -> None:
    bad = {"defaultAction": "SCMP_ACT_EXPLODE"}
    out = run_in(make_bundle, state_dir, sh("true"), with_seccomp(bad))
    assert out.returncode == 1
    assert "SCMP_ACT_EXPLODE" in out.stderr and len(out.stderr.strip().splitlines()) == 1


# -- more of the config ------------------------------------------------------------------


def test_oom_score_adj(make_bundle: BundleFactory, state_dir: Path) -> None:
    def oom(config: dict[str, object]) -> None:
        proc = config["process"]
        assert isinstance(proc, dict)
        proc["oomScoreAdj"] = 500

    result = run_in(make_bundle, state_dir, sh("cat /proc/self/oom_score_adj"), oom)
    assert result.stdout.strip() == "500", result.stderr


def test_bind_mount_read_only(make_bundle: BundleFactory, state_dir: Path) -> None:
    data = state_dir / "data"
    data.mkdir()
    (data / "hello.txt").write_text("from the host\n")
    result = run_in(
        make_bundle,
        state_dir,
        sh("cat /data/hello.txt; touch /data/new 2>/dev/null && echo wrote || echo refused"),
        so.with_mount("/data", "bind", str(data), ["rbind", "ro", "nosuid", "nodev"]),
    )
    assert result.stdout.splitlines() == ["from the host", "refused"], result.stderr
    assert not (data / "new").exists()


def test_bind_mount_cannot_escape_through_a_symlink(
    make_bundle: BundleFactory, state_dir: Path
) -> None:
    data = state_dir / "data"
    data.mkdir()
    bundle = make_bundle(
        sh("ls /escape/"), so.with_mount("/escape/x", "bind", str(data), ["rbind"])
    )
    outside = state_dir / "outside"
    outside.mkdir()
    (bundle / "rootfs" / "escape").symlink_to(str(outside))  # absolute: must stay inside
    result = run_cli(state_dir / "root", "run", "-b", str(bundle), unique())
    assert result.returncode == 0, result.stderr
    assert not (outside / "x").exists()
    assert (bundle / "rootfs" / str(outside).lstrip("/") / "x").is_dir()


def test_joins_another_containers_pid_and_ipc_namespaces(
    runtime: Runtime, make_bundle: BundleFactory, state_dir: Path
) -> None:
    first = unique()
    c = runtime.create(first, str(make_bundle(sh("sleep 60"), name="first")))
    runtime.start(first)
    second = make_bundle(
        sh("ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\\0' ' '"),
        so.with_namespace("pid", f"/proc/{c.pid}/ns/pid"),
        so.with_namespace("ipc", f"/proc/{c.pid}/ns/ipc"),
        name="second",
    )
    result = run_cli(state_dir / "root", "run", "-b", str(second), unique())
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert int(lines[0]) >= 3  # the first container's sleep, and our sh, ls, grep
    assert lines[1].strip() == "sleep 60"
    runtime.delete(first, force=True)


def test_cpuset(runtime: Runtime, make_bundle: BundleFactory, state_dir: Path) -> None:
    result = run_in(
        make_bundle,
        state_dir,
        sh("grep Cpus_allowed_list /proc/self/status"),
        so.with_cpu(cpus="0"),
    )
    assert result.stdout.split() == ["Cpus_allowed_list:", "0"], result.stderr


def test_duplicate_id_on_the_command_line(make_bundle: BundleFactory, state_dir: Path) -> None:
    root = state_dir / "root"
    cid = unique()
    assert run_cli(root, "create", "-b", str(make_bundle(sh("true"))), cid).returncode == 0
    again = run_cli(root, "create", "-b", str(make_bundle(sh("true"))), cid)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"orchestr runtime: container {cid} already exists"
    ]
    assert run_cli(root, "delete", cid).returncode == 0


def test_ps_and_update(runtime: Runtime, make_bundle: BundleFactory, state_dir: Path) -> None:
    import json

    cid = unique()
    runtime.run(cid, str(make_bundle(sh("sleep 60 & sleep 60 & wait"))), detach=True)
    root = state_dir / "runtime-root"
    for _ in range(200):
        pids = json.loads(run_cli(root, "ps", "--format", "json", cid).stdout)
        if len(pids) == 3:
            break
    assert len(pids) == 3  # sh and two sleeps
    table = run_cli(root, "ps", cid).stdout.splitlines()
    assert table[0].split()[:2] == ["PID", "USER"] or "PID" in table[0]
    assert sum(line.rstrip().endswith("sleep 60") for line in table) == 2
    out = run_cli(root, "update", "--memory", "96m", "--pids-limit", "50", cid)
    assert out.returncode == 0, out.stderr
    c = runtime.load(cid)
    assert c.cgroup is not None
    if c.cgroup.unified:
        d = c.cgroup.paths[cgroups.CGROUP_ROOT]
        assert Path(d, "memory.max").read_text().strip() == str(96 << 20)
    else:
        mem = c.cgroup.paths["/sys/fs/cgroup/memory"]
        assert Path(mem, "memory.limit_in_bytes").read_text().strip() == str(96 << 20)
        assert Path(c.cgroup.paths["/sys/fs/cgroup/pids"], "pids.max").read_text().strip() == "50"
    resources = c.config["linux"]["resources"]  # type: ignore[index]
    assert resources["memory"]["limit"] == 96 << 20  # type: ignore[index]
    bad = run_cli(root, "update", "--memory", "lots", cid)
    assert bad.returncode == 2 and "invalid size 'lots'" in bad.stderr
    runtime.delete(cid, force=True)


def test_kill_all_signals_every_process(runtime: Runtime, make_bundle: BundleFactory) -> None:
    import time

    cid = unique()
    # pid 1 ignores TERM; its children do not, so --all leaves only pid 1.
    runtime.run(cid, str(make_bundle(sh("sleep 60 & sleep 60 & wait"))), detach=True)
    for _ in range(200):
        if len(runtime.processes(cid)) == 3:
            break
        time.sleep(0.01)
    runtime.kill(cid, 15, all_processes=True)
    for _ in range(300):
        if runtime.state(cid)["status"] == "stopped":
            break
        time.sleep(0.01)
    assert runtime.state(cid)["status"] == "stopped"  # wait returned once the sleeps died
    runtime.delete(cid)


def test_missing_working_directory_is_created(make_bundle: BundleFactory, state_dir: Path):
    result = run_in(make_bundle, state_dir, sh("pwd"), so.with_cwd("/srv/app"))
    assert result.stdout.strip() == "/srv/app", result.stderr


def test_wait_needs_to_be_the_reaper(runtime: Runtime, make_bundle: BundleFactory) -> None:
    import os as _os

    cid = unique()
    c = runtime.create(cid, str(make_bundle(sh("exit 0"))))
    r, w = _os.pipe()
    child = _os.fork()
    if child == 0:  # not the reaper: must get a clear error, not a made-up status
        try:
            runtime.wait(c)
            _os.write(w, b"no error")
        except StateError as e:
            _os.write(w, str(e).encode())
        _os._exit(0)
    _os.close(w)
    message = _os.read(r, 4096).decode()
    _os.waitpid(child, 0)
    assert "not a child of this process" in message
    runtime.delete(cid)
