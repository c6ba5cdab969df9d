"""Pure cgroup conversions: OCI resources to v1 and v2 file writes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.runtime.linux.cgroups import (
    DEFAULT_DEVICE_RULES,
    device_rule_v1,
    parse_mountinfo,
    shares_to_weight,
    v1_writes,
    v2_writes,
    with_default_devices,
)

HYBRID = """\
25 21 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/memory rw shared:13 - cgroup cgroup rw,memory
30 21 0:27 / /proc rw - proc proc rw
"""
UNIFIED = "30 21 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_parse_mountinfo_hybrid() -> None:
    hs = parse_mountinfo(HYBRID)
    assert [(h.mountpoint, h.version, h.controllers) for h in hs] == [
        ("/sys/fs/cgroup/unified", 2, []),
        ("/sys/fs/cgroup/systemd", 1, ["name=systemd"]),
        ("/sys/fs/cgroup/cpu,cpuacct", 1, ["cpu", "cpuacct"]),
        ("/sys/fs/cgroup/memory", 1, ["memory"]),
    ]
    assert hs[2].options == "cpu,cpuacct"


def test_parse_mountinfo_unified() -> None:
    (h,) = parse_mountinfo(UNIFIED)
    assert (h.mountpoint, h.version) == ("/sys/fs/cgroup", 2)


def test_v1_writes() -> None:
    w = v1_writes(
        {
            "memory": {"limit": 1 << 26, "swap": 1 << 27, "reservation": 1 << 25},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
            "pids": {"limit": 0},
        }
    )
    assert ("memory", "memory.limit_in_bytes", str(1 << 26)) in w
    assert ("memory", "memory.memsw.limit_in_bytes", str(1 << 27)) in w
    assert ("cpu", "cpu.shares", "512") in w
    # The period goes before the quota: the kernel checks the pair.
    names = [f for _, f, _ in w]
    assert names.index("cpu.cfs_period_us") < names.index("cpu.cfs_quota_us")
    assert ("cpuset", "cpuset.cpus", "0-1") in w
    assert ("pids", "pids.max", "max") in w


def test_v2_writes() -> None:
    w = dict(
        v2_writes(
            {
                "memory": {"limit": 1 << 26, "swap": 1 << 27},
                "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
                "pids": {"limit": 100},
                "unified": {"memory.high": "50000000"},
            }
        )
    )
    assert w["memory.max"] == str(1 << 26)
    assert w["memory.swap.max"] == str((1 << 27) - (1 << 26))
    assert w["cpu.max"] == "50000 100000"
    assert w["cpu.weight"] == str(shares_to_weight(1024))
    assert w["pids.max"] == "100"
    assert w["memory.high"] == "50000000"


def test_v2_quota_without_limit_is_max() -> None:
    assert dict(v2_writes({"cpu": {"period": 50000}}))["cpu.max"] == "max 50000"


def test_unified_key_may_not_escape_the_cgroup() -> None:
    import pytest

    with pytest.raises(ValueError, match="not a cgroup file name"):
        v2_writes({"unified": {"../cgroup.procs": "1"}})


@given(st.integers(min_value=2, max_value=262144))
def test_shares_to_weight_stays_in_range_and_is_monotonic(shares: int) -> None:
    w = shares_to_weight(shares)
    assert 1 <= w <= 10000
    assert shares_to_weight(min(shares + 1, 262144)) >= w


def test_shares_to_weight_ends() -> None:
    assert shares_to_weight(2) == 1
    assert shares_to_weight(262144) == 10000
    assert shares_to_weight(1024) == 39


def test_device_rules() -> None:
    assert device_rule_v1({"allow": False, "access": "rwm"}) == ("devices.deny", "a")
    assert device_rule_v1(
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
    ) == (
        "devices.allow",
        "c 1:3 rwm",
    )
    assert device_rule_v1({"allow": True, "type": "c", "major": 136, "access": "rw"}) == (
        "devices.allow",
        "c 136:* rw",
    )


def test_default_device_rules_follow_the_configs() -> None:
    res = with_default_devices({"devices": [{"allow": False, "access": "rwm"}]})
    assert res["devices"][0] == {"allow": False, "access": "rwm"}  # type: ignore[index]
    assert res["devices"][1:] == DEFAULT_DEVICE_RULES  # type: ignore[index]
