"""agent.runtime.schema: the draft-04 validator agrees with jsonschema on the OCI schemas."""

from __future__ import annotations

import copy
import json
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.runtime import schema
from agent.runtime.schema import SchemaError, iter_errors, validate_config, validate_state

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = Path(schema.SCHEMA_DIR)
RUNC = shutil.which("runc") or ("/usr/sbin/runc" if Path("/usr/sbin/runc").exists() else None)

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")


# -- the reference: jsonschema's Draft4Validator over the same files -------------------


def _reference(name: str) -> Any:
    from referencing.jsonschema import DRAFT4

    resources = [
        (p.name, referencing.Resource.from_contents(json.loads(p.read_text()), DRAFT4))
        for p in SCHEMAS.glob("*.json")
    ]
    registry = referencing.Registry().with_resources(resources)
    return jsonschema.Draft4Validator({"$ref": name}, registry=registry)


REFERENCE = {name: _reference(name) for name in (schema.CONFIG_SCHEMA, schema.STATE_SCHEMA)}


def ref_valid(doc: object, name: str = schema.CONFIG_SCHEMA) -> bool:
    return bool(REFERENCE[name].is_valid(doc))


def ref_paths(doc: object, name: str = schema.CONFIG_SCHEMA) -> list[str]:
    return [path_str(e.absolute_path) for e in REFERENCE[name].iter_errors(doc)]


def path_str(parts: Any) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p.isidentifier():
            out += f".{p}"
        else:
            out += f"[{json.dumps(p)}]"
    return out.removeprefix(".")


def is_within(inner: str, outer: str) -> bool:
    """`inner` is `outer` or below it (linux.namespaces[2].type is within linux.namespaces)."""
    return inner == outer or outer == "" or inner.startswith((outer + ".", outer + "["))


# -- the corpus -------------------------------------------------------------------------


def runc_spec(*flags: str) -> dict[str, Any]:
    """What `runc spec` writes (specopts' copy of it when runc is not installed)."""
    if RUNC is None:
        from agent.runtime.specopts import default_spec

        return default_spec()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        subprocess.run([RUNC, "spec", *flags], cwd=d, check=True)
        doc: dict[str, Any] = json.loads((Path(d) / "config.json").read_text())
        return doc


RUNC_SPEC = runc_spec()
RUNC_ROOTLESS = runc_spec("--rootless") if RUNC else RUNC_SPEC

# Every part of the Linux config the schema describes, each with a valid value.
FULL: dict[str, Any] = {
    "ociVersion": "1.2.0",
    "hooks": {
        "prestart": [{"path": "/bin/true", "args": ["true"], "env": ["A=1"], "timeout": 5}],
        "createRuntime": [{"path": "/bin/true"}],
        "createContainer": [],
        "startContainer": [{"path": "/bin/true"}],
        "poststart": [{"path": "/bin/true"}],
        "poststop": [{"path": "/bin/true", "timeout": 1}],
    },
    "annotations": {"org.opencontainers.image.title": "x", "a": ""},
    "hostname": "box",
    "domainname": "example.org",
    "mounts": [
        {
            "destination": "/data",
            "type": "bind",
            "source": "/srv/data",
            "options": ["rbind", "ro"],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
        },
        {"destination": "/tmp"},
    ],
    "root": {"path": "rootfs", "readonly": False},
    "process": {
        "terminal": False,
        "consoleSize": {"height": 24, "width": 80},
        "user": {
            "uid": 4294967295,
            "gid": 0,
            "umask": 18,
            "additionalGids": [5, 10],
            "username": "root",
        },
        "args": ["sh", "-c", "true"],
        "commandLine": "sh -c true",
        "env": ["PATH=/bin", "HOME=/root"],
        "cwd": "/",
        "capabilities": {
            "bounding": ["CAP_KILL"],
            "permitted": ["CAP_KILL"],
            "effective": ["CAP_KILL"],
            "inheritable": [],
            "ambient": ["CAP_KILL"],
        },
        "rlimits": [
            {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 18446744073709551615},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        ],
        "apparmorProfile": "docker-default",
        "oomScoreAdj": -1000,
        "selinuxLabel": "system_u:system_r:container_t:s0",
        "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
        "noNewPrivileges": True,
        "scheduler": {
            "policy": "SCHED_OTHER",
            "nice": -5,
            "priority": 0,
            "flags": ["SCHED_FLAG_RESET_ON_FORK"],
            "runtime": 0,
            "deadline": 0,
            "period": 0,
        },
        "execCPUAffinity": {"initial": "0-3, 7", "final": ""},
    },
    "linux": {
        "devices": [
            {"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229, "fileMode": 438},
            {"type": "b", "path": "/dev/sda", "uid": 0, "gid": 6},
        ],
        "netDevices": {"eth1": {"name": "eth0"}, "dummy0": {}},
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000"},
        "resources": {
            "unified": {"memory.high": "max"},
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            ],
            "pids": {"limit": -1},
            "blockIO": {
                "weight": 500,
                "leafWeight": 300,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 10, "leafWeight": 10}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 0}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0}],
            },
            "cpu": {
                "cpus": "0-1",
                "mems": "0",
                "period": 100000,
                "quota": -1,
                "burst": 0,
                "realtimePeriod": 0,
                "realtimeRuntime": 0,
                "shares": 1024,
                "idle": 0,
            },
            "hugepageLimits": [
                {"pageSize": "2MB", "limit": 0},
                {"pageSize": "1GB", "limit": 18446744073709551615},
            ],
            "memory": {
                "limit": 536870912,
                "reservation": 0,
                "swap": -1,
                "kernel": -1,
                "kernelTCP": -1,
                "swappiness": 60,
                "disableOOMKiller": False,
                "useHierarchy": True,
                "checkBeforeUpdate": True,
            },
            "network": {"classID": 1, "priorities": [{"name": "eth0", "priority": 5}]},
            "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
        },
        "cgroupsPath": "/orchestr/full",
        "namespaces": [
            {"type": "pid"},
            {"type": "network", "path": "/var/run/netns/x"},
            {"type": "mount"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "user"},
            {"type": "cgroup"},
            {"type": "time"},
        ],
        "rootfsPropagation": "private",
        "seccomp": {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "listenerPath": "/run/seccomp.sock",
            "listenerMetadata": "x",
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {
                    "names": ["personality"],
                    "action": "SCMP_ACT_ALLOW",
                    "errnoRet": 1,
                    "args": [
                        {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                        {"index": 1, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"},
                    ],
                },
            ],
        },
        "maskedPaths": ["/proc/kcore"],
        "readonlyPaths": ["/proc/sys"],
        "mountLabel": "system_u:object_r:container_file_t:s0",
        "intelRdt": {
            "closID": "guaranteed",
            "l3CacheSchema": "L3:0=7f0",
            "memBwSchema": "MB:0=20",
            "schemata": ["L3:0=7f0"],
            "enableMonitoring": True,
        },
        "memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]},
        "personality": {"domain": "LINUX32", "flags": []},
        "timeOffsets": {
            "monotonic": {"secs": -9223372036854775808, "nanosecs": 0},
            "boottime": {"secs": 9223372036854775807, "nanosecs": 4294967295},
        },
    },
}

OTHER_PLATFORMS: list[dict[str, Any]] = [
    {
        "windows": {
            "layerFolders": ["C:\\layers\\a"],
            "devices": [{"id": "24E552D7", "idType": "class"}],
            "resources": {
                "memory": {"limit": 1},
                "cpu": {"count": 2, "shares": 1, "maximum": 10000, "affinity": {"mask": 3}},
                "storage": {"iops": 1, "bps": 1, "sandboxSize": 1},
            },
            "network": {"endpointList": ["x"], "allowUnqualifiedDNSQuery": True},
            "credentialSpec": {},
            "servicing": False,
            "ignoreFlushesDuringBoot": True,
            "hyperv": {"utilityVMPath": "C:\\uvm"},
        }
    },
    {
        "vm": {
            "hypervisor": {"path": "/usr/bin/qemu", "parameters": ["-m", "1G"]},
            "kernel": {"path": "/boot/vmlinuz", "initrd": "/boot/initrd"},
            "image": {"path": "/img.qcow2", "format": "qcow2"},
            "hwConfig": {"vcpus": 2, "memory": 1024, "iomems": [{"firstMFN": 1, "nrMFNs": 2}]},
        }
    },
    {"solaris": {"milestone": "svc:/milestone/container:default", "anet": [{"linkname": "n0"}]}},
    {"zos": {"namespaces": [{"type": "pid"}, {"type": "mount", "path": "/x"}]}},
    {
        "freebsd": {
            "devices": [{"path": "/dev/null", "mode": 438}],
            "jail": {"host": "new", "ip4": "inherit", "enforceStatfs": 2, "allow": {"mlock": True}},
        }
    },
]


def _with(base: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    edit(doc)
    return doc


def _specopts_variants() -> Iterator[dict[str, Any]]:
    from agent.runtime import specopts as so

    base = so.default_spec()
    yield base
    yield so.build(copy.deepcopy(base), so.with_terminal(False), so.with_args(["ls", "-l"]))
    yield so.build(copy.deepcopy(base), so.with_user(1000, 1000, [10, 20]), so.with_cwd("/tmp"))
    yield so.build(copy.deepcopy(base), so.with_memory_limit(1 << 30, 2 << 30))
    yield so.build(copy.deepcopy(base), so.with_pids_limit(10), so.with_cgroups_path("/x/y"))
    yield so.build(copy.deepcopy(base), so.with_cpu(shares=512, quota=50000, period=100000))
    yield so.build(copy.deepcopy(base), so.with_namespace("network", "/proc/1/ns/net"))
    yield so.build(copy.deepcopy(base), so.with_mount("/data", "bind", "data", ["ro"]))
    yield so.build(copy.deepcopy(base), so.with_env({"A": "1"}), so.with_hostname("h"))


VALID: list[tuple[str, dict[str, Any]]] = [
    ("runc spec", RUNC_SPEC),
    ("runc spec --rootless", RUNC_ROOTLESS),
    ("full", FULL),
    ("minimal", {"ociVersion": "1.0.0"}),
    ("unknown keys are allowed", {**RUNC_SPEC, "x-vendor": {"anything": [1, None]}}),
    ("empty hooks and annotations", {**RUNC_SPEC, "hooks": {}, "annotations": {}}),
    # Python's `$` matches before a final newline: jsonschema lets this pass, so do we.
    (
        "rlimit type with one trailing newline",
        _with(RUNC_SPEC, lambda d: d["process"]["rlimits"][0].update(type="RLIMIT_NOFILE\n")),
    ),
    # ".{1,}" matches no key made of newlines only, so such a key is not checked at all.
    ("annotation key of newlines", {**RUNC_SPEC, "annotations": {"\n": 1}}),
    ("integer-valued float where a number goes", {"ociVersion": "1", "x": 1.0}),
    (
        "int64 bounds",
        _with(
            FULL,
            lambda d: d["linux"]["resources"]["memory"].update(
                limit=9223372036854775807, swap=-9223372036854775808
            ),
        ),
    ),
    *((f"platform {next(iter(p))}", {**RUNC_SPEC, **p}) for p in OTHER_PLATFORMS),
    *((f"specopts {i}", doc) for i, doc in enumerate(_specopts_variants())),
]


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """An edit setting the value at a dotted path ("a.b[2].c"), creating objects on the way."""
    keys: list[str | int] = []
    for part in path.split("."):
        name, *indexes = part.split("[")
        keys.append(name)
        keys.extend(int(i.rstrip("]")) for i in indexes)

    def edit(doc: dict[str, Any]) -> None:
        node: Any = doc
        for k in keys[:-1]:
            if isinstance(k, str) and k not in node:
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value

    return edit


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    parent, _, key = path.rpartition(".")

    def edit(doc: dict[str, Any]) -> None:
        node: Any = doc
        for k in parent.split(".") if parent else []:
            name, *indexes = k.split("[")
            node = node[name]
            for i in indexes:
                node = node[int(i.rstrip("]"))]
        del node[key]

    return edit


# (what, base, edit, the path our first error names)
INVALID: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], None], str]] = [
    ("no ociVersion", RUNC_SPEC, _delete("ociVersion"), ""),
    ("ociVersion a number", RUNC_SPEC, _set("ociVersion", 1), "ociVersion"),
    ("root.path missing", RUNC_SPEC, _delete("root.path"), "root"),
    ("root.path a number", RUNC_SPEC, _set("root.path", 0), "root.path"),
    ("root.readonly a string", RUNC_SPEC, _set("root.readonly", "yes"), "root.readonly"),
    ("process.cwd missing", RUNC_SPEC, _delete("process.cwd"), "process"),
    ("process.args a string", RUNC_SPEC, _set("process.args", "sh -c true"), "process.args"),
    ("process.args of numbers", RUNC_SPEC, _set("process.args", [1]), "process.args[0]"),
    ("process.env with null", RUNC_SPEC, _set("process.env", [None]), "process.env[0]"),
    ("process.terminal a string", RUNC_SPEC, _set("process.terminal", "true"), "process.terminal"),
    ("negative uid", RUNC_SPEC, _set("process.user.uid", -1), "process.user.uid"),
    ("uid above uint32", RUNC_SPEC, _set("process.user.uid", 1 << 32), "process.user.uid"),
    ("uid above uint64", RUNC_SPEC, _set("process.user.uid", 1 << 64), "process.user.uid"),
    ("fractional gid", RUNC_SPEC, _set("process.user.gid", 1.5), "process.user.gid"),
    ("float uid 1.0 (draft-04)", RUNC_SPEC, _set("process.user.uid", 1.0), "process.user.uid"),
    ("boolean uid", RUNC_SPEC, _set("process.user.uid", True), "process.user.uid"),
    (
        "additionalGids of strings",
        RUNC_SPEC,
        _set("process.user.additionalGids", ["10"]),
        "process.user.additionalGids[0]",
    ),
    (
        "rlimit type lower case",
        RUNC_SPEC,
        _set("process.rlimits[0].type", "nofile"),
        "process.rlimits[0].type",
    ),
    (
        "rlimit type with two newlines",
        RUNC_SPEC,
        _set("process.rlimits[0].type", "RLIMIT_NOFILE\n\n"),
        "process.rlimits[0].type",
    ),
    (
        "rlimit type with a digit",
        RUNC_SPEC,
        _set("process.rlimits[0].type", "RLIMIT_N0FILE"),
        "process.rlimits[0].type",
    ),
    ("rlimit without soft", RUNC_SPEC, _delete("process.rlimits[0].soft"), "process.rlimits[0]"),
    (
        "rlimit hard above uint64",
        RUNC_SPEC,
        _set("process.rlimits[0].hard", 1 << 64),
        "process.rlimits[0].hard",
    ),
    (
        "capabilities a string",
        RUNC_SPEC,
        _set("process.capabilities.bounding", "CAP_KILL"),
        "process.capabilities.bounding",
    ),
    (
        "consoleSize without width",
        RUNC_SPEC,
        _set("process.consoleSize", {"height": 1}),
        "process.consoleSize",
    ),
    (
        "bad ioPriority class",
        RUNC_SPEC,
        _set("process.ioPriority", {"class": "RT"}),
        "process.ioPriority.class",
    ),
    (
        "bad scheduler policy",
        FULL,
        _set("process.scheduler.policy", "SCHED_FAST"),
        "process.scheduler.policy",
    ),
    (
        "bad scheduler flag",
        FULL,
        _set("process.scheduler.flags", ["SCHED_FLAG_X"]),
        "process.scheduler.flags[0]",
    ),
    (
        "bad cpu affinity",
        FULL,
        _set("process.execCPUAffinity.initial", "0-3;5"),
        "process.execCPUAffinity.initial",
    ),
    ("oomScoreAdj a string", RUNC_SPEC, _set("process.oomScoreAdj", "-1"), "process.oomScoreAdj"),
    ("hostname a number", RUNC_SPEC, _set("hostname", 5), "hostname"),
    ("mounts an object", RUNC_SPEC, _set("mounts", {}), "mounts"),
    ("mount without destination", RUNC_SPEC, _delete("mounts[0].destination"), "mounts[0]"),
    ("mount options a string", RUNC_SPEC, _set("mounts[1].options", "nosuid"), "mounts[1].options"),
    (
        "mount idmapping without size",
        FULL,
        _delete("mounts[0].uidMappings[0].size"),
        "mounts[0].uidMappings[0]",
    ),
    (
        "unknown namespace type",
        RUNC_SPEC,
        _set("linux.namespaces[0].type", "weird"),
        "linux.namespaces[0].type",
    ),
    ("namespace a string", RUNC_SPEC, _set("linux.namespaces[1]", "pid"), "linux.namespaces[1]"),
    ("namespace without type", RUNC_SPEC, _set("linux.namespaces[2]", {}), "linux.namespaces[2]"),
    (
        "namespace path a number",
        RUNC_SPEC,
        _set("linux.namespaces[2].path", 3),
        "linux.namespaces[2].path",
    ),
    (
        "device rule allow a string",
        RUNC_SPEC,
        _set("linux.resources.devices[0].allow", "false"),
        "linux.resources.devices[0].allow",
    ),
    (
        "device rule without allow",
        RUNC_SPEC,
        _delete("linux.resources.devices[0].allow"),
        "linux.resources.devices[0]",
    ),
    (
        "memory limit a string",
        RUNC_SPEC,
        _set("linux.resources.memory.limit", "1G"),
        "linux.resources.memory.limit",
    ),
    (
        "memory limit below int64",
        RUNC_SPEC,
        _set("linux.resources.memory.limit", -(1 << 63) - 1),
        "linux.resources.memory.limit",
    ),
    (
        "cpu quota above int64",
        RUNC_SPEC,
        _set("linux.resources.cpu.quota", 1 << 63),
        "linux.resources.cpu.quota",
    ),
    (
        "negative swappiness",
        RUNC_SPEC,
        _set("linux.resources.memory.swappiness", -1),
        "linux.resources.memory.swappiness",
    ),
    ("pids without limit", RUNC_SPEC, _set("linux.resources.pids", {}), "linux.resources.pids"),
    (
        "hugepage size without B",
        FULL,
        _set("linux.resources.hugepageLimits[0].pageSize", "2M"),
        "linux.resources.hugepageLimits[0].pageSize",
    ),
    (
        "hugepage size with leading 0",
        FULL,
        _set("linux.resources.hugepageLimits[0].pageSize", "02MB"),
        "linux.resources.hugepageLimits[0].pageSize",
    ),
    (
        "weightDevice without minor (allOf)",
        FULL,
        _set("linux.resources.blockIO.weightDevice", [{"major": 8}]),
        "linux.resources.blockIO.weightDevice[0]",
    ),
    (
        "negative throttle rate (allOf)",
        FULL,
        _set("linux.resources.blockIO.throttleReadBpsDevice[0].rate", -1),
        "linux.resources.blockIO.throttleReadBpsDevice[0].rate",
    ),
    (
        "blkio weight above uint16",
        FULL,
        _set("linux.resources.blockIO.weight", 70000),
        "linux.resources.blockIO.weight",
    ),
    ("device type x", FULL, _set("linux.devices[0].type", "x"), "linux.devices[0].type"),
    ("device type cc", FULL, _set("linux.devices[0].type", "cc"), "linux.devices[0].type"),
    ("device without path", FULL, _delete("linux.devices[1].path"), "linux.devices[1]"),
    (
        "device fileMode 512",
        FULL,
        _set("linux.devices[0].fileMode", 512),
        "linux.devices[0].fileMode",
    ),
    (
        "uid mapping hostID a string",
        FULL,
        _set("linux.uidMappings[0].hostID", "1000"),
        "linux.uidMappings[0].hostID",
    ),
    (
        "sysctl value a number",
        RUNC_SPEC,
        _set("linux.sysctl", {"net.ipv4.ip_forward": 1}),
        'linux.sysctl["net.ipv4.ip_forward"]',
    ),
    ("annotation value a number", RUNC_SPEC, _set("annotations", {"a": 1}), "annotations.a"),
    (
        "unified value a bool",
        FULL,
        _set("linux.resources.unified", {"memory.max": True}),
        'linux.resources.unified["memory.max"]',
    ),
    (
        "rootfsPropagation rprivate",
        RUNC_SPEC,
        _set("linux.rootfsPropagation", "rprivate"),
        "linux.rootfsPropagation",
    ),
    (
        "seccomp without defaultAction",
        FULL,
        _delete("linux.seccomp.defaultAction"),
        "linux.seccomp",
    ),
    (
        "seccomp rule without names",
        FULL,
        _set("linux.seccomp.syscalls[0].names", []),
        "linux.seccomp.syscalls[0].names",
    ),
    (
        "seccomp arch x86_64",
        FULL,
        _set("linux.seccomp.architectures", ["x86_64"]),
        "linux.seccomp.architectures[0]",
    ),
    (
        "seccomp arg op EQ",
        FULL,
        _set("linux.seccomp.syscalls[1].args[0].op", "EQ"),
        "linux.seccomp.syscalls[1].args[0].op",
    ),
    (
        "memBwSchema without MB:",
        FULL,
        _set("linux.intelRdt.memBwSchema", "L3:0=1"),
        "linux.intelRdt.memBwSchema",
    ),
    (
        "memBwSchema of two lines",
        FULL,
        _set("linux.intelRdt.memBwSchema", "MB:0=1\nMB:1=2"),
        "linux.intelRdt.memBwSchema",
    ),
    (
        "netDevice name a number",
        FULL,
        _set("linux.netDevices.eth1.name", 1),
        "linux.netDevices.eth1.name",
    ),
    (
        "netDevice a string",
        FULL,
        _set("linux.netDevices", {"eth-1": "eth0"}),
        'linux.netDevices["eth-1"]',
    ),
    (
        "negative rdma handles",
        FULL,
        _set("linux.resources.rdma.mlx5_1.hcaHandles", -1),
        "linux.resources.rdma.mlx5_1.hcaHandles",
    ),
    (
        "negative nanosecs",
        FULL,
        _set("linux.timeOffsets.monotonic.nanosecs", -1),
        "linux.timeOffsets.monotonic.nanosecs",
    ),
    (
        "personality LINUX64",
        FULL,
        _set("linux.personality.domain", "LINUX64"),
        "linux.personality.domain",
    ),
    ("hook without path", FULL, _set("hooks.prestart", [{"args": []}]), "hooks.prestart[0]"),
    ("hook timeout 0", FULL, _set("hooks.poststop[0].timeout", 0), "hooks.poststop[0].timeout"),
    (
        "windows without layers",
        RUNC_SPEC,
        _set("windows", {"layerFolders": []}),
        "windows.layerFolders",
    ),
    ("vm kernel without path", RUNC_SPEC, _set("vm", {"kernel": {}}), "vm.kernel"),
    (
        "zos network namespace",
        RUNC_SPEC,
        _set("zos", {"namespaces": [{"type": "network"}]}),
        "zos.namespaces[0].type",
    ),
    (
        "freebsd jail host x",
        RUNC_SPEC,
        _set("freebsd", {"jail": {"host": "x"}}),
        "freebsd.jail.host",
    ),
]


# -- agreement with jsonschema ------------------------------------------------------------


@pytest.mark.parametrize(("what", "doc"), VALID, ids=[v[0] for v in VALID])
def test_valid_configs_pass_both(what: str, doc: dict[str, Any]) -> None:
    assert ref_valid(doc), list(REFERENCE[schema.CONFIG_SCHEMA].iter_errors(doc))[:1]
    assert list(iter_errors(doc)) == []
    validate_config(doc)


@pytest.mark.parametrize(("what", "base", "edit", "path"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_configs_fail_both_naming_the_path(
    what: str, base: dict[str, Any], edit: Callable[[dict[str, Any]], None], path: str
) -> None:
    doc = _with(base, edit)
    assert not ref_valid(doc)
    with pytest.raises(SchemaError) as info:
        validate_config(doc)
    assert info.value.path == path
    assert str(info.value) == (
        f"config.json: {path}: {info.value.reason}" if path else f"config.json: {info.value.reason}"
    )
    # Every error jsonschema finds, we find at or below its path, and the other way round.
    ours = [e.path for e in iter_errors(doc)]
    theirs = ref_paths(doc)
    assert all(any(is_within(o, t) for o in ours) for t in theirs), (ours, theirs)
    assert all(any(is_within(o, t) for t in theirs) for o in ours), (ours, theirs)


def test_there_are_enough_invalid_cases() -> None:
    assert len(INVALID) >= 30


def test_non_objects_are_refused() -> None:
    docs: list[object] = [None, [], "x", 1, 1.5, True]
    for doc in docs:
        assert not ref_valid(doc)
        with pytest.raises(SchemaError, match=r"^config\.json: .* is not of type object$"):
            validate_config(doc)


POOL: list[object] = [
    None, True, False, 0, -1, 1, 1.0, 1.5, 1 << 32, 1 << 64, -(1 << 63) - 1, "", "x", "pid",
    "RLIMIT_X", "CAP_X", "c", "2MB", "MB:1", "0-1", [], [1], ["a"], [{}], {}, {"type": "pid"},
    {"a": 1}, {"path": "/x"},
]  # fmt: skip


def _locations(doc: object, here: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    yield here
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _locations(v, (*here, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _locations(v, (*here, i))


def _mutate(doc: dict[str, Any], rnd: random.Random) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for _ in range(rnd.choice((1, 1, 2, 3))):
        where = rnd.choice([w for w in _locations(doc) if w])
        parent: Any = doc
        for k in where[:-1]:
            parent = parent[k]
        if rnd.random() < 0.15 and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = copy.deepcopy(rnd.choice(POOL))
    return doc


def test_random_mutations_agree_with_jsonschema() -> None:
    rnd = random.Random(20240501)
    bases = [RUNC_SPEC, RUNC_ROOTLESS, FULL, *({**RUNC_SPEC, **p} for p in OTHER_PLATFORMS)]
    invalid = 0
    for _ in range(600):
        doc = _mutate(rnd.choice(bases), rnd)
        theirs = ref_paths(doc)
        ours = [e.path for e in iter_errors(doc)]
        assert bool(ours) == bool(theirs), (doc, ours, theirs)
        assert all(any(is_within(o, t) for o in ours) for t in theirs), (ours, theirs)
        assert all(any(is_within(o, t) for t in theirs) for o in ours), (ours, theirs)
        if theirs:
            invalid += 1
            with pytest.raises(SchemaError) as info:
                validate_config(doc)
            assert info.value.path in ours
        else:
            validate_config(doc)
    assert invalid > 200  # the test is worth something only if many are invalid


# -- messages -------------------------------------------------------------------------------


def _first(doc: object) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        validate_config(doc)
    return info.value


def test_enum_message_lists_the_choices() -> None:
    e = _first(_with(RUNC_SPEC, lambda d: d["linux"]["namespaces"].append({"type": "weird"})))
    assert e.path == "linux.namespaces[5].type"
    assert e.reason == (
        '"weird" is not one of ["mount", "pid", "network", "uts", "ipc", "user", "cgroup", "time"]'
    )
    assert str(e) == f"config.json: linux.namespaces[5].type: {e.reason}"


def test_messages_read_as_one_line() -> None:
    cases: list[tuple[Callable[[dict[str, Any]], None], str]] = [
        (_set("process.args", "sh -c true"), 'process.args: "sh -c true" is not of type array'),
        (_delete("process.cwd"), 'process: "cwd" is a required property'),
        (_set("process.user.uid", -1), "process.user.uid: -1 is less than the minimum of 0"),
        (
            _set("process.user.uid", 1 << 32),
            "process.user.uid: 4294967296 is greater than the maximum of 4294967295",
        ),
        (
            _set("process.rlimits[0].type", "nofile"),
            'process.rlimits[0].type: "nofile" does not match "^RLIMIT_[A-Z]+$"',
        ),
        (
            _set(
                "linux.seccomp",
                {
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}],
                },
            ),
            "linux.seccomp.syscalls[0].names: [] is too short: at least 1 item needed",
        ),
        (_delete("ociVersion"), '"ociVersion" is a required property'),
    ]
    for edit, line in cases:
        e = _first(_with(RUNC_SPEC, edit))
        assert str(e) == f"config.json: {line}"
        assert "\n" not in str(e)


def test_long_values_are_cut_short() -> None:
    e = _first(_with(RUNC_SPEC, _set("hostname", ["x" * 500])))
    assert len(str(e)) < 120 and '["xxx' in e.reason and "..." in e.reason


def test_any_of_reports_the_branch_that_got_furthest() -> None:
    # linux.namespaces items are anyOf[NamespaceReference]: the error is the inner one.
    e = _first(_with(RUNC_SPEC, _set("linux.namespaces[0]", {"type": "pid", "path": 1})))
    assert (e.path, e.reason) == ("linux.namespaces[0].path", "1 is not of type string")
    e = _first(_with(RUNC_SPEC, _set("linux.namespaces[0]", "pid")))
    assert (e.path, e.reason) == ("linux.namespaces[0]", '"pid" is not of type object')


def test_iter_errors_finds_them_all() -> None:
    doc = copy.deepcopy(RUNC_SPEC)
    doc["process"]["args"] = "sh"
    doc["process"]["rlimits"][0]["type"] = "nofile"
    del doc["root"]["path"]
    doc["linux"]["namespaces"].append({"type": "weird"})
    del doc["ociVersion"]
    paths = sorted(e.path for e in iter_errors(doc))
    assert paths == sorted(
        ["process.args", "process.rlimits[0].type", "root", "linux.namespaces[5].type", ""]
    )
    assert all(isinstance(e, SchemaError) and isinstance(e, ValueError) for e in iter_errors(doc))


def test_first_error_follows_the_document_order() -> None:
    doc = {"ociVersion": "1", "hostname": 1, "domainname": 2}
    assert _first(doc).path == "hostname"
    assert _first(dict(reversed(doc.items()))).path == "domainname"


def test_schema_error_pickles() -> None:
    import pickle

    e = _first({"ociVersion": 1})
    again = pickle.loads(pickle.dumps(e))
    assert (again.path, again.reason, str(again)) == (e.path, e.reason, str(e))


# -- state ------------------------------------------------------------------------------


STATE = {
    "ociVersion": "1.0.2",
    "id": "web",
    "status": "running",
    "pid": 4242,
    "bundle": "/srv/bundles/web",
    "annotations": {"a": "b"},
}


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda d: None, None),
        (lambda d: d.update(status="created", pid=0), None),
        (lambda d: d.update(rootfs="/x", created="2024-01-01T00:00:00Z", owner=""), None),
        (lambda d: d.pop("pid"), None),
        (lambda d: d.pop("id"), ""),
        (lambda d: d.pop("bundle"), ""),
        (lambda d: d.update(status="paused"), "status"),  # runc says "paused"; the schema not
        (lambda d: d.update(pid=-1), "pid"),
        (lambda d: d.update(pid="1"), "pid"),
        (lambda d: d.update(annotations={"a": 1}), "annotations.a"),
        (lambda d: d.update(ociVersion=None), "ociVersion"),
    ],
)
def test_state(edit: Callable[[dict[str, Any]], None], path: str | None) -> None:
    doc = copy.deepcopy(STATE)
    edit(doc)
    assert ref_valid(doc, schema.STATE_SCHEMA) == (path is None)
    if path is None:
        validate_state(doc)
        return
    with pytest.raises(SchemaError) as info:
        validate_state(doc)
    assert info.value.path == path
    assert str(info.value).startswith("state.json: ")


# -- the schema files hold nothing the validator would skip ----------------------------------

JSON_TYPES = {"object", "array", "string", "integer", "number", "boolean", "null"}


def _schema_nodes() -> Iterator[tuple[str, dict[str, Any]]]:
    """(file, schema) for every schema in the files: roots, definitions, $ref targets."""
    files = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
    todo: list[tuple[str, Any]] = []
    for name, doc in files.items():
        if "$schema" in doc:
            todo.append((name, doc))
        todo.extend((name, d) for d in doc.get("definitions", {}).values())
    seen: set[int] = set()
    while todo:
        name, node = todo.pop()
        assert isinstance(node, dict), f"{name}: a schema that is not an object: {node!r}"
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield name, node
        for key in ("properties", "patternProperties", "definitions"):
            todo.extend((name, sub) for sub in node.get(key, {}).values())
        for key in ("allOf", "anyOf", "oneOf"):
            todo.extend((name, sub) for sub in node.get(key, []))
        items = node.get("items")
        todo.extend(
            (name, sub) for sub in (items if isinstance(items, list) else [items] if items else [])
        )
        if isinstance(node.get("additionalProperties"), dict):
            todo.append((name, node["additionalProperties"]))
        if "$ref" in node:
            target, _, pointer = node["$ref"].partition("#")
            target = target or name
            sub = files[target]
            for token in pointer.split("/")[1:]:
                sub = sub[token]
            todo.append((target, sub))


def test_every_keyword_in_the_schemas_is_supported() -> None:
    known = schema.SUPPORTED_KEYWORDS | schema.IGNORED_KEYWORDS
    visited: set[str] = set()
    for name, node in _schema_nodes():
        visited.add(name)
        unknown = set(node) - known
        assert not unknown, f"{name}: keywords the validator does not know: {unknown}"
        if "type" in node:
            types = node["type"] if isinstance(node["type"], list) else [node["type"]]
            assert set(types) <= JSON_TYPES, f"{name}: type {node['type']!r}"
        if "additionalProperties" in node:
            assert isinstance(node["additionalProperties"], bool | dict)
        assert "id" not in node, f"{name}: `id` would change how $ref resolves"
    assert visited == {p.name for p in SCHEMAS.glob("*.json")}, "files no walk reached"


def test_every_pattern_in_the_schemas_is_checked_natively() -> None:
    patterns: set[str] = set()
    for _, node in _schema_nodes():
        patterns.update([node["pattern"]] if "pattern" in node else [])
        patterns.update(node.get("patternProperties", {}))
    assert patterns == set(schema.NATIVE_PATTERNS), "update NATIVE_PATTERNS"


def test_the_schema_files_are_valid_draft4() -> None:
    for p in SCHEMAS.glob("*.json"):
        doc = json.loads(p.read_text())
        if "$schema" in doc:
            jsonschema.Draft4Validator.check_schema(doc)


# -- native regular expressions agree with re.search --------------------------------------

ALPHABET = "0123456789,- \n\tKMGBRLIMT_CAPcbupxaé"
CRAFTED = [
    "", "\n", "\n\n", " ", "a", "0", "1", "9", "0-3", "0-3, 7", "1,2,3", "-", ",", "0-3;5",
    "1MB", "2MB", "10GB", "0MB", "02MB", "2M", "2KB\n", "2KB\n\n", "2kB", "12345678901234KB",
    "MB:", "MB:0=20", "MB:0=20\n", "MB:0\n1", "mb:1", "xMB:1", "MB:\n\n",
    "RLIMIT_NOFILE", "RLIMIT_", "RLIMIT_nofile", "RLIMIT_NOFILE\n", "RLIMIT_NOFILE\n\n",
    "RLIMIT_NO_FILE", " RLIMIT_CORE", "RLIMIT_CORE ", "RLIMIT_É",
    "c", "b", "u", "p", "c\n", "c\n\n", "cc", "x", "C",
    "CAP_KILL", "CAP_", "CAP_SYS_ADMIN", "CAP__", "CAP_kill", "CAP_KILL\n", "cap_kill",
    "\na", "a\n", "é", "\t",
]  # fmt: skip


def _strings(rnd: random.Random) -> Iterator[str]:
    yield from CRAFTED
    for s in CRAFTED:  # near misses around the crafted ones
        for _ in range(5):
            i = rnd.randrange(len(s) + 1)
            c = rnd.choice(ALPHABET)
            yield s[:i] + c + s[i:]
            if s:
                yield s[:i] + s[i + 1 :]
    for _ in range(3000):
        yield "".join(rnd.choice(ALPHABET) for _ in range(rnd.randrange(12)))


@pytest.mark.parametrize("pattern", sorted(schema.NATIVE_PATTERNS))
def test_native_pattern_agrees_with_re(pattern: str) -> None:
    native = schema.NATIVE_PATTERNS[pattern]
    compiled = re.compile(pattern)
    for s in _strings(random.Random(pattern)):
        assert native(s) == bool(compiled.search(s)), (pattern, s)


@pytest.mark.parametrize("pattern", sorted(schema.NATIVE_PATTERNS))
def test_native_pattern_agrees_with_re_on_short_strings(pattern: str) -> None:
    """Every string of up to 3 characters over an alphabet made for the pattern."""
    import itertools

    native = schema.NATIVE_PATTERNS[pattern]
    compiled = re.compile(pattern)
    alphabet = sorted(set(re.sub(r"\\n", "\n", pattern)) | set("0a\n_Z"))
    for n in range(4):
        for chars in itertools.product(alphabet, repeat=n):
            s = "".join(chars)
            for candidate in (s, "RLIMIT_" + s, "CAP_" + s, "MB:" + s, "1" + s):
                assert native(candidate) == bool(compiled.search(candidate)), (pattern, candidate)


def test_native_patterns_agree_with_re_hypothesis() -> None:
    hypothesis: Any = pytest.importorskip("hypothesis")
    st: Any = pytest.importorskip("hypothesis.strategies")

    def check(pattern: str, s: str) -> None:
        assert schema.NATIVE_PATTERNS[pattern](s) == bool(re.search(pattern, s))

    given = hypothesis.given(
        st.sampled_from(sorted(schema.NATIVE_PATTERNS)),
        st.text(alphabet=st.sampled_from(ALPHABET)) | st.text(),
    )
    hypothesis.settings(max_examples=500, deadline=None)(given(check))()


def test_other_patterns_fall_back_to_re() -> None:
    matches = schema._matcher("^a+b$")
    assert matches("aab") and not matches("ba")


# -- loading: lazy, cached, and light on imports ----------------------------------------------


def test_schema_files_are_read_when_first_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema, "_files", {})
    monkeypatch.setattr(schema, "_refs", {})
    validate_config({"ociVersion": "1.0.2"})
    assert set(schema._files) == {"config-schema.json", "defs.json"}
    validate_config(RUNC_SPEC)
    assert set(schema._files) == {
        "config-schema.json",
        "defs.json",
        "config-linux.json",
        "defs-linux.json",
    }
    first = schema._files["defs.json"]
    validate_config({**RUNC_SPEC, "windows": {"layerFolders": ["x"]}})
    assert "config-windows.json" in schema._files
    assert schema._files["defs.json"] is first


def test_importing_the_validator_and_validating_stays_light() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from agent.runtime import schema, fastjson; "
        "doc = fastjson.loads(sys.stdin.read()); schema.validate_config(doc); "
        "schema.validate_state({'ociVersion': '1', 'id': 'x', 'status': 'created', "
        "'bundle': '/'}); "
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(ROOT)],
        input=json.dumps(FULL),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    heavy = {"re", "json", "typing", "enum", "functools", "collections", "dataclasses",
             "pathlib", "types", "copy", "inspect"}  # fmt: skip
    assert not heavy & set(out), heavy & set(out)


# -- keywords the OCI schemas support but hardly use, against jsonschema directly ---------

KEYWORD_CASES: list[tuple[dict[str, Any], list[object]]] = [
    ({"type": ["integer", "string"]}, [1, "a", 1.0, 1.5, True, None, [], {}]),
    ({"type": "number"}, [1, 1.5, -0.0, True, "1", None, 10**30]),
    ({"type": "integer"}, [0, -1, 10**30, 1.0, 2.5, False, "1"]),
    ({"type": "null"}, [None, 0, False, ""]),
    ({"type": "boolean"}, [True, False, 0, 1, None]),
    ({"enum": [1, "a", None, [1, True], {"k": False}]},
     [1, 1.0, True, "a", "b", None, False, [1, True], [1, 1], [True, True], {"k": False},
      {"k": 0}]),
    ({"minimum": 0, "maximum": 1.5}, [0, 1.5, -1, 1.6, 2**64, "x", True, -0.0]),
    ({"items": [{"type": "string"}, {"type": "integer"}]}, [[], ["a"], ["a", 1], [1, "a"],
     ["a", 1, None], "not an array"]),
    ({"minItems": 2}, [[], [1], [1, 2], "ab", {}]),
    ({"oneOf": [{"type": "integer"}, {"minimum": 2}]}, [1, 3, 1.5, 2.5, "x"]),
    ({"anyOf": [{"type": "string"}, {"required": ["a"]}]}, ["x", {"a": 1}, {}, 1]),
    ({"allOf": [{"required": ["a"]}, {"required": ["b"]}]}, [{}, {"a": 1}, {"a": 1, "b": 2}, 3]),
    (
        {"properties": {"a": {"type": "string"}}, "patternProperties": {"^x-": {"type": "integer"}},
         "additionalProperties": False},
        [{}, {"a": "s"}, {"a": 1}, {"x-1": 1}, {"x-1": "s"}, {"b": 1}, {"ax-": 1}, []],
    ),
    (
        {"properties": {"a": {}}, "additionalProperties": {"type": "boolean"}},
        [{"a": 1}, {"b": True}, {"b": 1}, {"a": 1, "c": None}],
    ),
    ({"pattern": "^a+b$"}, ["ab", "aab", "b", "abc", "xab", "ab\n", 7]),
    ({"patternProperties": {"b$": {"type": "null"}}}, [{"ab": None}, {"ab": 1}, {"ba": 1}]),
]  # fmt: skip


@pytest.mark.parametrize(("keywords", "instances"), KEYWORD_CASES)
def test_keywords_agree_with_jsonschema(keywords: dict[str, Any], instances: list[object]) -> None:
    reference = jsonschema.Draft4Validator(keywords)
    for inst in instances:
        run = schema._Run(first=False)
        schema._visit(run, inst, keywords, "test.json", None)
        assert (not run.errors) == reference.is_valid(inst), (keywords, inst, run.errors)


def test_one_of_says_when_more_than_one_matched() -> None:
    run = schema._Run(first=True)
    schema._visit(run, 3, {"oneOf": [{"type": "integer"}, {"minimum": 2}]}, "test.json", None)
    assert run.errors == [(None, "3 is valid under more than one of the given schemas", "oneOf")]


def test_public_api() -> None:
    assert sorted(schema.__all__) == sorted(
        ["CONFIG_SCHEMA", "STATE_SCHEMA", "SchemaError", "iter_errors", "validate_config",
         "validate_state"]
    )  # fmt: skip
    assert all(hasattr(schema, name) for name in schema.__all__)
    assert issubclass(SchemaError, ValueError)
