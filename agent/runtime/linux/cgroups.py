"""cgroups v1 and v2 (and the v1/v2 hybrid): create, limit, join, kill, remove.

Which one the machine has is read from /proc/self/mountinfo, never assumed.
`Cgroup` holds one directory per hierarchy the container lives in: every v1
hierarchy (plus the unified one on a hybrid), or the single v2 directory.
Resource conversion from OCI values to file writes is pure (`v1_writes`,
`v2_writes`) and unit-tested; this module's other functions do the I/O.
"""

from __future__ import annotations

import errno
import os
import time

CGROUP_ROOT = "/sys/fs/cgroup"


class Hierarchy:
    """A mounted cgroup hierarchy: where it is and which controllers it has."""

    __slots__ = ("controllers", "mountpoint", "options", "version")

    def __init__(self, mountpoint: str, version: int, controllers: list[str], options: str):
        self.mountpoint = mountpoint
        self.version = version
        self.controllers = controllers
        self.options = options  # the super options, to mount it again inside a cgroupns

    def __repr__(self) -> str:
        return f"Hierarchy(v{self.version} {self.mountpoint} {','.join(self.controllers)})"


_V1_CONTROLLERS = frozenset(
    {
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "net_prio",
        "blkio",
        "perf_event",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
    }
)


def parse_mountinfo(text: str) -> list[Hierarchy]:
    """Cgroup hierarchies from /proc/self/mountinfo text (pure)."""
    out: list[Hierarchy] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fstype, _source, super_opts = [*right.split(" "), "", ""][:3]
        fields = left.split(" ")
        if len(fields) < 5:
            continue
        mountpoint = fields[4].replace("\\040", " ")
        if fstype == "cgroup2":
            out.append(Hierarchy(mountpoint, 2, [], super_opts))
        elif fstype == "cgroup":
            opts = super_opts.split(",")
            ctrls = [o for o in opts if o in _V1_CONTROLLERS or o.startswith("name=")]
            if ctrls:
                out.append(Hierarchy(mountpoint, 1, ctrls, ",".join(ctrls)))
    return out


_hierarchies: list[Hierarchy] | None = None


def hierarchies() -> list[Hierarchy]:
    global _hierarchies
    if _hierarchies is None:
        with open("/proc/self/mountinfo") as f:
            found = parse_mountinfo(f.read())
        # Keep only the hierarchies under the cgroup root (not copies elsewhere).
        found = [h for h in found if h.mountpoint.startswith(CGROUP_ROOT)]
        seen: set[str] = set()
        _hierarchies = []
        for h in found:
            if h.mountpoint not in seen:
                seen.add(h.mountpoint)
                _hierarchies.append(h)
    return _hierarchies


def is_unified() -> bool:
    """True on a pure cgroup v2 machine."""
    return any(h.version == 2 and h.mountpoint == CGROUP_ROOT for h in hierarchies())


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000], as runc does."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def _num(d: dict[str, object], key: str) -> int | None:
    v = d.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _obj(v: object) -> dict[str, object]:
    return v if isinstance(v, dict) else {}


def _items(v: object) -> list[dict[str, object]]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def v1_writes(resources: dict[str, object]) -> list[tuple[str, str, str]]:
    """(controller, file, value) writes for OCI linux.resources on cgroup v1 (pure)."""
    w: list[tuple[str, str, str]] = []
    mem = _obj(resources.get("memory"))
    limit = _num(mem, "limit")
    swap = _num(mem, "swap")
    if limit is not None:
        w.append(("memory", "memory.limit_in_bytes", str(limit)))
    if swap is not None:
        w.append(("memory", "memory.memsw.limit_in_bytes", str(swap)))
    if (v := _num(mem, "reservation")) is not None:
        w.append(("memory", "memory.soft_limit_in_bytes", str(v)))
    if (v := _num(mem, "swappiness")) is not None and v >= 0:
        w.append(("memory", "memory.swappiness", str(v)))
    if mem.get("disableOOMKiller"):
        w.append(("memory", "memory.oom_control", "1"))
    cpu = _obj(resources.get("cpu"))
    if (v := _num(cpu, "shares")) is not None and v:
        w.append(("cpu", "cpu.shares", str(v)))
    if (v := _num(cpu, "period")) is not None and v:
        w.append(("cpu", "cpu.cfs_period_us", str(v)))
    if (v := _num(cpu, "quota")) is not None and v:
        w.append(("cpu", "cpu.cfs_quota_us", str(v)))
    if (v := _num(cpu, "realtimePeriod")) is not None and v:
        w.append(("cpu", "cpu.rt_period_us", str(v)))
    if (v := _num(cpu, "realtimeRuntime")) is not None and v:
        w.append(("cpu", "cpu.rt_runtime_us", str(v)))
    if isinstance(cpu.get("cpus"), str) and cpu["cpus"]:
        w.append(("cpuset", "cpuset.cpus", str(cpu["cpus"])))
    if isinstance(cpu.get("mems"), str) and cpu["mems"]:
        w.append(("cpuset", "cpuset.mems", str(cpu["mems"])))
    pids = _obj(resources.get("pids"))
    if (v := _num(pids, "limit")) is not None:
        w.append(("pids", "pids.max", "max" if v <= 0 else str(v)))
    devices = resources.get("devices")
    if isinstance(devices, list):
        for rule in devices:
            w.append(("devices", *device_rule_v1(_obj(rule))))
    blkio = _obj(resources.get("blockIO"))
    if (v := _num(blkio, "weight")) is not None and v:
        w.append(("blkio", "blkio.weight", str(v)))
    for key, fname in (
        ("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
        ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
        ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
        ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"),
    ):
        for d in _items(blkio.get(key)):
            w.append(("blkio", fname, f"{d.get('major')}:{d.get('minor')} {d.get('rate')}"))
    for h in _items(resources.get("hugepageLimits")):
        w.append(("hugetlb", f"hugetlb.{h.get('pageSize')}.limit_in_bytes", str(h.get("limit"))))
    net = _obj(resources.get("network"))
    if (v := _num(net, "classID")) is not None:
        w.append(("net_cls", "net_cls.classid", str(v)))
    for p in _items(net.get("priorities")):
        w.append(("net_prio", "net_prio.ifpriomap", f"{p.get('name')} {p.get('priority')}"))
    return w


# Rules every container gets after its config's own (runc's allowed devices):
# mknod of anything (access still needs a rule), the default device nodes, ptys.
DEFAULT_DEVICE_RULES: list[dict[str, object]] = [
    {"allow": True, "type": "c", "major": -1, "minor": -1, "access": "m"},
    {"allow": True, "type": "b", "major": -1, "minor": -1, "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},  # null
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},  # zero
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},  # full
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},  # random
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},  # urandom
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},  # tty
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},  # console
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # ptmx
    {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "rwm"},  # pts
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # net/tun
]


def with_default_devices(resources: dict[str, object]) -> dict[str, object]:
    """The config's device rules followed by the defaults (pure)."""
    rules = resources.get("devices")
    own = [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []
    return {**resources, "devices": [*own, *DEFAULT_DEVICE_RULES]}


def device_rule_v1(rule: dict[str, object]) -> tuple[str, str]:
    """('devices.allow'|'devices.deny', 'c 1:3 rwm') for an OCI device cgroup rule."""
    kind = str(rule.get("type") or "a")
    major = rule.get("major")
    minor = rule.get("minor")
    maj = "*" if major is None or major == -1 else str(major)
    mnr = "*" if minor is None or minor == -1 else str(minor)
    access = str(rule.get("access") or "rwm")
    fname = "devices.allow" if rule.get("allow") else "devices.deny"
    if kind == "a":
        return fname, "a"
    return fname, f"{kind} {maj}:{mnr} {access}"


def v2_writes(resources: dict[str, object]) -> list[tuple[str, str]]:
    """(file, value) writes for OCI linux.resources on cgroup v2 (pure)."""
    w: list[tuple[str, str]] = []
    mem = _obj(resources.get("memory"))
    limit = _num(mem, "limit")
    swap = _num(mem, "swap")
    if limit is not None:
        w.append(("memory.max", "max" if limit < 0 else str(limit)))
    if swap is not None:
        # v1's memsw is memory+swap; v2's swap.max is swap alone.
        if swap < 0:
            w.append(("memory.swap.max", "max"))
        elif limit is not None and limit > 0:
            w.append(("memory.swap.max", str(max(swap - limit, 0))))
    if (v := _num(mem, "reservation")) is not None:
        w.append(("memory.low", str(v)))
    if mem.get("disableOOMKiller"):
        raise ValueError("linux.resources.memory.disableOOMKiller: cgroup v2 has no such switch")
    cpu = _obj(resources.get("cpu"))
    if (v := _num(cpu, "shares")) is not None and v:
        w.append(("cpu.weight", str(shares_to_weight(v))))
    quota = _num(cpu, "quota")
    period = _num(cpu, "period")
    if quota or period:
        q = "max" if quota is None or quota <= 0 else str(quota)
        w.append(("cpu.max", f"{q} {period or 100000}"))
    if isinstance(cpu.get("cpus"), str) and cpu["cpus"]:
        w.append(("cpuset.cpus", str(cpu["cpus"])))
    if isinstance(cpu.get("mems"), str) and cpu["mems"]:
        w.append(("cpuset.mems", str(cpu["mems"])))
    pids = _obj(resources.get("pids"))
    if (v := _num(pids, "limit")) is not None:
        w.append(("pids.max", "max" if v <= 0 else str(v)))
    blkio = _obj(resources.get("blockIO"))
    if (v := _num(blkio, "weight")) is not None and v:
        w.append(("io.weight", f"default {1 + (v - 10) * 9999 // 990}"))
    for key, field in (
        ("throttleReadBpsDevice", "rbps"),
        ("throttleWriteBpsDevice", "wbps"),
        ("throttleReadIOPSDevice", "riops"),
        ("throttleWriteIOPSDevice", "wiops"),
    ):
        for d in _items(blkio.get(key)):
            w.append(("io.max", f"{d.get('major')}:{d.get('minor')} {field}={d.get('rate')}"))
    for h in _items(resources.get("hugepageLimits")):
        w.append((f"hugetlb.{h.get('pageSize')}.max", str(h.get("limit"))))
    for key, value in _obj(resources.get("unified")).items():
        if "/" in key or key.startswith("."):
            raise ValueError(f"linux.resources.unified: {key!r} is not a cgroup file name")
        w.append((key, str(value)))
    return w


def _write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"cgroup {path}: {os.strerror(e.errno or 0)}") from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise OSError(e.errno, f"cgroup {path} <- {value!r}: {os.strerror(e.errno or 0)}") from None
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


class Cgroup:
    """A container's cgroup: one directory in each hierarchy it belongs to."""

    __slots__ = ("created", "path", "paths", "unified")

    def __init__(
        self, path: str, paths: dict[str, str], unified: bool, created: list[str] | None = None
    ) -> None:
        self.path = path  # the cgroupsPath, e.g. /orchestr/<id>
        self.paths = paths  # hierarchy mountpoint -> directory
        self.unified = unified
        self.created = created or []  # directories made here, parents first

    @classmethod
    def at(cls, cgroups_path: str) -> Cgroup:
        rel = cgroups_path.strip("/")
        paths = {h.mountpoint: os.path.join(h.mountpoint, rel) for h in hierarchies()}
        return cls("/" + rel, paths, is_unified())

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "paths": self.paths,
            "unified": self.unified,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Cgroup:
        paths = d.get("paths")
        return cls(
            str(d.get("path")),
            {str(k): str(v) for k, v in paths.items()} if isinstance(paths, dict) else {},
            bool(d.get("unified")),
            [str(c) for c in created] if isinstance(created := d.get("created"), list) else [],
        )

    def _dir(self, controller: str) -> str | None:
        for h in hierarchies():
            if controller in h.controllers or (h.version == 2 and self.unified):
                return self.paths.get(h.mountpoint)
        return None

    def create(self, resources: dict[str, object]) -> None:
        """Make the directories and apply the limits; on failure remove what was made."""
        try:
            for d in self.paths.values():
                self.created.extend(_makedirs(d))
            if self.unified:
                self._enable_v2_controllers(resources)
                self._attach_device_filter(resources)
            else:
                self._init_cpuset()
            self.apply(resources)
        except BaseException:
            self.destroy(timeout=0)
            raise

    def _attach_device_filter(self, resources: dict[str, object]) -> None:
        """v2 has no device files: the rules become an eBPF program on the cgroup.

        Attached at create, before any process joins; `update` does not change
        it (a second program would only ever restrict further).
        """
        devices = resources.get("devices")
        if not isinstance(devices, list):
            return
        from agent.runtime.linux import devices_bpf  # ctypes: only where containers start

        program = devices_bpf.compile_rules(devices)
        os.close(devices_bpf.load_and_attach(program, self.paths[CGROUP_ROOT]))

    def apply(self, resources: dict[str, object]) -> None:
        """Write the limits (at create, and for `update` on a live container).

        Device rules are not re-applied on v2 (see _attach_device_filter)."""
        if self.unified:
            for fname, value in v2_writes(resources):
                _write(os.path.join(self.paths[CGROUP_ROOT], fname), value)
            return
        for ctrl, fname, value in v1_writes(resources):
            ctrl_dir = self._dir(ctrl)
            if ctrl_dir is None:
                raise OSError(errno.ENOENT, f"cgroup controller {ctrl} is not mounted")
            _write(os.path.join(ctrl_dir, fname), value)

    def _init_cpuset(self) -> None:
        """A new v1 cpuset is empty and takes no task until cpus and mems are set."""
        for h in hierarchies():
            if "cpuset" not in h.controllers:
                continue
            cur = h.mountpoint
            for part in os.path.relpath(self.paths[h.mountpoint], cur).split("/"):
                parent, cur = cur, os.path.join(cur, part)
                for fname in ("cpuset.cpus", "cpuset.mems"):
                    if not _read(os.path.join(cur, fname)).strip():
                        _write(os.path.join(cur, fname), _read(os.path.join(parent, fname)).strip())

    def _enable_v2_controllers(self, resources: dict[str, object]) -> None:
        """Delegate the controllers a container needs down to its directory.

        The usual ones always (limits and stats), hugetlb only when asked for.
        """
        root = CGROUP_ROOT
        d = self.paths[root]
        available = _read(os.path.join(root, "cgroup.controllers")).split()
        usual = ["cpu", "cpuset", "memory", "pids", "io"]
        if resources.get("hugepageLimits"):
            usual.append("hugetlb")
        wanted = [c for c in usual if c in available]
        parts = os.path.relpath(d, root).split("/")
        cur = root
        for part in parts:
            enabled = _read(os.path.join(cur, "cgroup.subtree_control")).split()
            missing = [c for c in wanted if c not in enabled]
            if missing:
                _write(
                    os.path.join(cur, "cgroup.subtree_control"),
                    " ".join("+" + c for c in missing),
                )
            cur = os.path.join(cur, part)

    def add(self, pid: int) -> None:
        for d in self.paths.values():
            _write(os.path.join(d, "cgroup.procs"), str(pid))

    def pids(self) -> list[int]:
        for d in self.paths.values():
            try:
                return [int(p) for p in _read(os.path.join(d, "cgroup.procs")).split()]
            except FileNotFoundError:
                continue
        return []

    def kill_all(self, sig: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _freezer_file(self) -> tuple[str, str, str] | None:
        """(path, frozen value, thawed value) of the freezer knob."""
        if self.unified:
            return os.path.join(self.paths[CGROUP_ROOT], "cgroup.freeze"), "1", "0"
        d = self._dir("freezer")
        if d is None:
            return None
        return os.path.join(d, "freezer.state"), "FROZEN", "THAWED"

    def frozen(self) -> bool:
        knob = self._freezer_file()
        if knob is None:
            return False
        try:
            return _read(knob[0]).strip() == knob[1]
        except OSError:
            return False

    def freeze(self) -> None:
        knob = self._freezer_file()
        if knob is None:
            raise OSError(errno.ENOTSUP, "the freezer cgroup is not mounted")
        _write(knob[0], knob[1])
        # v1 passes through FREEZING; wait until the whole group is stopped.
        deadline = time.monotonic() + 5
        while _read(knob[0]).strip() != knob[1] and time.monotonic() < deadline:
            time.sleep(0.001)

    def thaw(self) -> None:
        knob = self._freezer_file()
        if knob is not None:
            _write(knob[0], knob[2])

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer struck inside this cgroup."""
        if self.unified:
            path = os.path.join(self.paths[CGROUP_ROOT], "memory.events")
        else:
            d = self._dir("memory")
            if d is None:
                return False
            path = os.path.join(d, "memory.oom_control")
        try:
            text = _read(path)
        except OSError:
            return False
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip() != "0":
                return True
        return False

    def destroy(self, timeout: float = 2.0) -> None:
        """Remove the directories, waiting up to `timeout` for the last tasks to go."""
        deadline = time.monotonic() + timeout
        for d in self.paths.values():
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                        raise OSError(
                            e.errno, f"remove cgroup {d}: {os.strerror(e.errno or 0)}"
                        ) from None
                    time.sleep(0.005)
        # Parents made for this container (e.g. /orchestr) go once the last child left.
        for d in sorted(set(self.created) - set(self.paths.values()), key=len, reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass


def _makedirs(d: str) -> list[str]:
    """mkdir -p returning what it made, parents first; tolerant of a sibling
    container removing a shared parent meanwhile."""
    missing: list[str] = []
    cur = d
    while not os.path.isdir(cur):
        missing.append(cur)
        cur = os.path.dirname(cur)
    made: list[str] = []
    for path in reversed(missing):
        for _ in range(10):
            try:
                os.mkdir(path)
                made.append(path)
                break
            except FileExistsError:
                break
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), exist_ok=True)
        else:
            raise OSError(errno.ENOENT, f"cgroup {path}: cannot be created")
    return made
