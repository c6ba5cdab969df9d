"""The kernel edge of bridge networking: bridges, veth pairs, addresses, routes, sysctls.

Every function acts in one network namespace, `node`: the path of a namespace
file (a test host, or the node's namespace when the daemon runs elsewhere), or
None for the calling thread's current namespace. Container namespaces are
files too (see `agent.network.netns`), made before the container starts and
wired completely here.

How netlink reaches a namespace: a netlink socket belongs to the namespace it
was opened in. A throwaway thread joins the namespace (`netns.run_in`),
opens the socket and hands its descriptor to pyroute2's `IPRoute(fileno=...)`.
(pyroute2's own `netns=` option forks a helper process for every socket.)

One worker thread owns every pyroute2 object. pyroute2 0.9's synchronous API
runs an asyncio loop per thread, keeps its socket per thread, and cannot run
in a thread whose asyncio loop is already running (the daemon's). So each
public call hands one closure to that thread; it keeps one `IPRoute` per node
namespace (keyed by the namespace's nsfs inode, least recently used closed
beyond `_CACHE_SIZE`), while a container namespace gets a socket for the
length of one `attach`. A cached socket keeps its namespace alive:
`close(node)` / `close_all()` release them.

Cost: a pyroute2 request takes ~0.5 ms (its asyncio machinery, not the kernel),
so name-to-index look-ups and "up" use plain interface ioctls on a socket
opened alongside. Deleting a veth pair takes the kernel ~15-20 ms
(synchronous RCU waits); when a container goes away for good, removing its
namespace file alone is enough: the kernel deletes the pair with the
namespace, in the background.

Ownership: links orchestr makes carry an IFLA_IFALIAS mark ("orchestr:<id>"),
so stale clean-up at start (`owned_links`) never touches anyone else's.
`ensure_bridge` adopts an existing bridge only if it carries the same mark.

Sysctls: /proc/sys/net shows the network namespace of the thread that opens
it, so a sysctl of another namespace is written from a thread inside it.

Failures raise `NetworkError` naming the step, the link, the namespace and
the errno text; `attach` undoes what it made (deleting the host end of a veth
pair deletes both ends). pyroute2 takes ~0.2-0.3 s to import: it is imported
on first use, and the daemon should call `preload()` at start, off the
`docker run` path.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import re
import secrets
import socket
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from agent.network import netns
from agent.network.base import NetworkError

__all__ = [
    "attach",
    "close",
    "close_all",
    "delete_link",
    "detach",
    "ensure_bridge",
    "link_exists",
    "mac_for",
    "owned_links",
    "preload",
    "set_sysctl",
    "veth_name",
]

T = TypeVar("T")
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_CACHE_SIZE = 8
_IFA_F_NODAD = 0x02
_BRPORT_MODE_HAIRPIN = 1
_IFF_UP = 0x1
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_SIOCGIFINDEX = 0x8933
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


# -- pure parts -----------------------------------------------------------------------


def mac_for(ipv4: str) -> str:
    """Docker's MAC for a container address: 02:42 and the four bytes of the IPv4."""
    try:
        packed = ipaddress.IPv4Address(ipv4.split("/")[0]).packed
    except ValueError as exc:
        raise NetworkError(f"no MAC for {ipv4!r}: {exc}") from None
    return "02:42:" + ":".join(f"{b:02x}" for b in packed)


def veth_name() -> str:
    """A fresh host-side veth name: "veth" and 7 hex digits, as Docker names them."""
    return "veth" + secrets.token_hex(4)[:7]


def check_ifname(name: str) -> str:
    """`name` if the kernel accepts it as an interface name (dev_valid_name)."""
    if not 0 < len(name) < 16 or name in (".", "..") or re.search(r"[/:\s]", name):
        raise NetworkError(f"invalid interface name {name!r}: 1-15 characters, no '/', ':', space")
    return name


def parse_interfaces(addresses: Sequence[str]) -> list[Interface]:
    """CIDR strings ("172.18.0.2/16", "fd00::2/64") as interfaces; a prefix is required."""
    parsed: list[Interface] = []
    for text in addresses:
        if "/" not in text:
            raise NetworkError(f"address {text!r} has no prefix length (expected CIDR)")
        try:
            parsed.append(ipaddress.ip_interface(text))
        except ValueError as exc:
            raise NetworkError(f"invalid address {text!r}: {exc}") from None
    return parsed


def parse_gateways(gateways: Sequence[str]) -> list[Address]:
    parsed: list[Address] = []
    for text in gateways:
        try:
            parsed.append(ipaddress.ip_address(text))
        except ValueError as exc:
            raise NetworkError(f"invalid gateway {text!r}: {exc}") from None
    if len({g.version for g in parsed}) != len(parsed):
        raise NetworkError(f"gateways {list(gateways)}: at most one per IP version")
    return parsed


def check_mac(mac: str) -> str:
    if not _MAC.match(mac.lower()):
        raise NetworkError(f"invalid MAC address {mac!r} (expected xx:xx:xx:xx:xx:xx)")
    return mac.lower()


def sysctl_path(key: str) -> str:
    """/proc/sys path of a sysctl: dotted ("net.ipv4.ip_forward"), or slashed when a
    part holds a dot ("net/ipv4/conf/eth0.100/forwarding")."""
    parts = key.split("/") if "/" in key else key.split(".")
    if not all(parts) or any(p in (".", "..") for p in parts):
        raise NetworkError(f"invalid sysctl key {key!r}")
    return "/proc/sys/" + "/".join(parts)


def is_owned(alias: str | None, prefix: str) -> bool:
    """Whether an IFLA_IFALIAS mark falls under `prefix` ("orchestr" owns "orchestr:x")."""
    return alias is not None and (alias == prefix or alias.startswith(prefix + ":"))


# -- the namespace a call acts in ------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    key: tuple[int, int]  # (st_dev, st_ino) of the namespace: its identity
    path: str  # what to open to enter it (valid while the caller waits)
    label: str  # for messages


def _target(node: str | None) -> _Target:
    if node is None:
        path = f"/proc/{os.getpid()}/task/{threading.get_native_id()}/ns/net"
        label = "the current network namespace"
    else:
        path, label = node, f"network namespace {node}"
    try:
        st = os.stat(path)
    except OSError as exc:
        raise NetworkError(f"{label}: {os.strerror(exc.errno or 0)}") from None
    return _Target((st.st_dev, st.st_ino), path, label)


def _reason(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if not isinstance(code, int) or code <= 0:
        code = getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        return os.strerror(code)
    return str(exc) or type(exc).__name__


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    code = getattr(exc, "errno", None)
    return code if isinstance(code, int) else None


def _step(action: str, where: _Target, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except NetworkError:
        raise
    except Exception as exc:
        raise NetworkError(f"{action} in {where.label}: {_reason(exc)}") from exc


# -- the netlink worker ----------------------------------------------------------------


_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_worker = threading.local()
_sockets: OrderedDict[tuple[int, int], _Handle] = OrderedDict()  # touched by the worker only


def _start_worker() -> None:
    # A worker spawned by a thread in another namespace would inherit it.
    fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        from agent.runtime.linux import libc
        from agent.runtime.linux.flags import CLONE_NEWNET

        libc.setns(fd, CLONE_NEWNET, "/proc/self/ns/net")
    finally:
        os.close(fd)
    st = os.stat("/proc/thread-self/ns/net")
    _worker.key = (st.st_dev, st.st_ino)


def _on_worker(fn: Callable[[], T]) -> T:
    global _executor
    if hasattr(_worker, "key"):
        return fn()
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                1, thread_name_prefix="orchestr-netlink", initializer=_start_worker
            )
        executor = _executor
    return executor.submit(fn).result()


def preload() -> None:
    """Import pyroute2 now (it takes ~0.2-0.3 s) rather than on the first attach."""
    import pyroute2.iproute.linux  # noqa: F401


@dataclass
class _Handle:
    """A namespace's pyroute2 IPRoute, and a plain socket for the interface ioctls
    (name to index, up): microseconds where a pyroute2 request takes ~0.5 ms."""

    ipr: Any
    ioctl: socket.socket

    def close(self) -> None:
        self.ipr.close()
        self.ioctl.close()


def _sockets_here() -> tuple[socket.socket, socket.socket]:
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, 0)
    return nl, socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, 0)


def _open(target: _Target) -> _Handle:
    from pyroute2.iproute.linux import IPRoute

    def opened() -> tuple[socket.socket, socket.socket]:
        if target.key == getattr(_worker, "key", None):
            return _sockets_here()
        return netns.run_in(target.path, _sockets_here)

    nl, ioctl = _step("open sockets", target, opened)
    try:
        ipr = _step("start netlink", target, lambda: IPRoute(fileno=nl.detach(), groups=0))
    except BaseException:
        ioctl.close()
        raise
    return _Handle(ipr, ioctl)


def _node(target: _Target) -> _Handle:
    handle = _sockets.get(target.key)
    if handle is not None:
        _sockets.move_to_end(target.key)
        return handle
    handle = _open(target)
    _sockets[target.key] = handle
    while len(_sockets) > _CACHE_SIZE:
        _sockets.popitem(last=False)[1].close()
    return handle


@contextmanager
def _session(target: _Target) -> Iterator[_Handle]:
    """Sockets for one call (in a container's namespace); closed afterwards."""
    handle = _open(target)
    try:
        yield handle
    finally:
        handle.close()


def _ifindex(handle: _Handle, name: str, where: _Target) -> int | None:
    try:
        ifreq = fcntl.ioctl(
            handle.ioctl.fileno(), _SIOCGIFINDEX, struct.pack("16s24x", name.encode())
        )
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise NetworkError(f"look up link {name} in {where.label}: {_reason(exc)}") from None
    index: int = struct.unpack_from("i", ifreq, 16)[0]
    return index


def _set_up(handle: _Handle, name: str, where: _Target) -> None:
    try:
        ifreq = fcntl.ioctl(
            handle.ioctl.fileno(), _SIOCGIFFLAGS, struct.pack("16s24x", name.encode())
        )
        flags = struct.unpack_from("H", ifreq, 16)[0] | _IFF_UP
        fcntl.ioctl(
            handle.ioctl.fileno(), _SIOCSIFFLAGS, struct.pack("16sH22x", name.encode(), flags)
        )
    except OSError as exc:
        raise NetworkError(f"bring {name} up in {where.label}: {_reason(exc)}") from None


def close(node: str | None = None) -> None:
    """Close the cached netlink socket of a namespace (it keeps the namespace alive)."""
    key = _target(node).key

    def drop() -> None:
        handle = _sockets.pop(key, None)
        if handle is not None:
            handle.close()

    _on_worker(drop)


def close_all() -> None:
    """Close every cached netlink socket."""

    def drop() -> None:
        while _sockets:
            _sockets.popitem()[1].close()

    _on_worker(drop)


# -- netlink steps (run on the worker) -------------------------------------------------


def _get_link(ipr: Any, name: str, where: _Target) -> Any | None:
    try:
        return ipr.link("get", ifname=name)[0]
    except Exception as exc:
        if _code(exc) == errno.ENODEV:
            return None
        raise NetworkError(f"look up link {name} in {where.label}: {_reason(exc)}") from exc


def _kind(link: Any) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return None if info is None else info.get_attr("IFLA_INFO_KIND")


def _delete(ipr: Any, name: str, where: _Target) -> bool:
    """Delete a link by name; False if there was none."""
    try:
        ipr.link("del", ifname=name)
    except Exception as exc:
        if _code(exc) == errno.ENODEV:
            return False
        raise NetworkError(f"delete link {name} in {where.label}: {_reason(exc)}") from exc
    return True


def _add_address(ipr: Any, index: int, name: str, iface: Interface, where: _Target) -> None:
    extra = {"flags": _IFA_F_NODAD} if iface.version == 6 else {}
    _step(
        f"add address {iface} to {name}",
        where,
        lambda: ipr.addr(
            "add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen, **extra
        ),
    )


def _addresses(ipr: Any, index: int, where: _Target) -> list[tuple[Interface, int]]:
    """Global-scope addresses of a link, with the family each was dumped with."""
    found: list[tuple[Interface, int]] = []
    for msg in _step("list addresses", where, lambda: tuple(ipr.addr("dump", index=index))):
        if msg["scope"] != 0:
            continue
        ip = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        found.append((ipaddress.ip_interface(f"{ip}/{msg['prefixlen']}"), msg["family"]))
    return found


def _write_sysctl(path: str, value: str, target: _Target, node: str | None) -> None:
    def write() -> None:
        with open(path, "w") as f:
            f.write(value)

    try:
        if node is None:
            write()
        else:
            netns.run_in(node, write)
    except OSError as exc:
        key = path.removeprefix("/proc/sys/")
        raise NetworkError(f"set sysctl {key}={value} in {target.label}: {_reason(exc)}") from None


# -- public operations -----------------------------------------------------------------


def ensure_bridge(
    name: str,
    addresses: Sequence[str],
    mtu: int = 1500,
    owner: str = "orchestr",
    *,
    alias: str | None = None,
    node: str | None = None,
) -> None:
    """Make bridge `name` exist, marked, up, with exactly `addresses` (global scope) and
    route_localnet on; idempotent.

    The mark (IFLA_IFALIAS) is `alias` (e.g. "orchestr:<network id>") or `owner`. An
    existing link of that name is adopted only if it is a bridge carrying the same mark.
    """
    mark = alias or owner
    check_ifname(name)
    if not is_owned(mark, owner):
        raise NetworkError(f"bridge {name}: alias {mark!r} is not under owner {owner!r}")
    wanted = parse_interfaces(addresses)
    target = _target(node)

    def work() -> None:
        ipr = _node(target).ipr
        link = _get_link(ipr, name, target)
        if link is not None:
            _adopt(ipr, link, name, mark, owner, mtu, target)
            _converge_addresses(ipr, link["index"], name, wanted, target)
            return
        _step(
            f"create bridge {name}",
            target,
            lambda: ipr.link("add", ifname=name, kind="bridge", mtu=mtu, state="up"),
        )
        try:
            _step(f"mark bridge {name}", target, lambda: ipr.link("set", ifname=name, ifalias=mark))
            made = _get_link(ipr, name, target)
            if made is None:
                raise NetworkError(f"bridge {name} vanished from {target.label}")
            _converge_addresses(ipr, made["index"], name, wanted, target)
        except BaseException:
            _delete(ipr, name, target)
            raise

    _on_worker(work)
    _write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1", target, node)


def _converge_addresses(
    ipr: Any, index: int, name: str, wanted: list[Interface], target: _Target
) -> None:
    present = _addresses(ipr, index, target)
    for iface, family in present:
        if iface not in wanted:
            remove = partial(
                ipr.addr,
                "del",
                index=index,
                family=family,
                address=str(iface.ip),
                prefixlen=iface.network.prefixlen,
            )
            _step(f"remove address {iface} from {name}", target, remove)
    have = {iface for iface, _ in present}
    for iface in wanted:
        if iface not in have:
            _add_address(ipr, index, name, iface, target)


def _adopt(
    ipr: Any, link: Any, name: str, mark: str, owner: str, mtu: int, target: _Target
) -> None:
    kind = _kind(link)
    current = link.get_attr("IFLA_IFALIAS")
    if kind != "bridge":
        raise NetworkError(
            f"link {name} in {target.label} is a {kind or 'plain'} link, not a bridge"
        )
    if current != mark:
        whose = f"belongs to {current!r}" if is_owned(current, owner) else f"is not {owner}'s"
        raise NetworkError(f"bridge {name} in {target.label} {whose} (want alias {mark!r})")
    changes: dict[str, Any] = {}
    if link.get_attr("IFLA_MTU") != mtu:
        changes["mtu"] = mtu
    if not link["flags"] & _IFF_UP:
        changes["state"] = "up"
    if changes:
        _step(f"update bridge {name}", target, lambda: ipr.link("set", ifname=name, **changes))


def delete_link(name: str, node: str | None = None) -> None:
    """Delete a link by name; idempotent."""
    target = _target(node)
    _on_worker(lambda: _delete(_node(target).ipr, name, target))


def detach(host_ifname: str, node: str | None = None) -> None:
    """Delete a container's veth pair by its host end; idempotent."""
    delete_link(host_ifname, node)


def link_exists(name: str, node: str | None = None) -> bool:
    target = _target(node)
    return _on_worker(lambda: _ifindex(_node(target), name, target) is not None)


def owned_links(alias_prefix: str = "orchestr", node: str | None = None) -> list[tuple[str, str]]:
    """(name, alias) of the links whose alias is `alias_prefix` or starts with it and ":"."""
    target = _target(node)

    def work() -> list[tuple[str, str]]:
        ipr = _node(target).ipr
        links = _step("list links", target, lambda: tuple(ipr.link("dump")))
        found = [(link.get_attr("IFLA_IFNAME"), link.get_attr("IFLA_IFALIAS")) for link in links]
        return sorted((n, a) for n, a in found if is_owned(a, alias_prefix))

    return _on_worker(work)


def set_sysctl(key: str, value: str | int, node: str | None = None) -> None:
    """Write a sysctl ("net.ipv4.ip_forward") as seen from the namespace `node`."""
    _write_sysctl(sysctl_path(key), str(value), _target(node), node)


def attach(
    bridge: str,
    container_netns: str,
    *,
    ifname: str = "eth0",
    addresses: Sequence[str] = (),
    gateways: Sequence[str] = (),
    mtu: int = 1500,
    mac: str | None = None,
    host_ifname: str | None = None,
    alias: str = "orchestr",
    node: str | None = None,
) -> str:
    """Wire a container's namespace to `bridge` with a veth pair; returns the host end.

    The host end (`host_ifname`, or "veth" and 7 hex digits) joins the bridge, up, in
    hairpin mode, marked with `alias`. The peer is made directly inside
    `container_netns` as `ifname` with `mac` (default: `mac_for` the first IPv4
    address), then gets `addresses`, comes up and routes by default via `gateways`.
    On failure nothing is left behind.
    """
    check_ifname(ifname)
    if host_ifname is not None:
        check_ifname(host_ifname)
    wanted = parse_interfaces(addresses)
    via = parse_gateways(gateways)
    if mac is None:
        v4 = [i for i in wanted if i.version == 4]
        mac = mac_for(str(v4[0].ip)) if v4 else None
    else:
        mac = check_mac(mac)
    target = _target(node)
    inside = _target(container_netns)

    def work() -> str:
        handle = _node(target)
        ipr = handle.ipr
        master = _ifindex(handle, bridge, target)
        if master is None:
            raise NetworkError(f"no bridge {bridge} in {target.label}")
        with _session(inside) as container:
            host = _create_veth(ipr, master, host_ifname, ifname, mtu, mac, target, inside)
            try:
                _step(
                    f"set hairpin mode and mark on {host}",
                    target,
                    lambda: ipr.link(
                        "set",
                        ifname=host,
                        kind="bridge_slave",
                        mode=_BRPORT_MODE_HAIRPIN,
                        ifalias=alias,
                    ),
                )
                _configure_inside(container, ifname, wanted, via, inside)
            except BaseException:
                _delete(ipr, host, target)
                raise
        return host

    return _on_worker(work)


def _create_veth(
    ipr: Any,
    master: int,
    host_ifname: str | None,
    ifname: str,
    mtu: int,
    mac: str | None,
    target: _Target,
    inside: _Target,
) -> str:
    for _ in range(3):
        host = host_ifname or veth_name()
        try:
            fd = os.open(inside.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise NetworkError(f"open {inside.label}: {_reason(exc)}") from None
        peer: dict[str, Any] = {"ifname": ifname, "net_ns_fd": fd, "mtu": mtu}
        if mac is not None:
            peer["address"] = mac
        try:
            ipr.link("add", ifname=host, kind="veth", master=master, mtu=mtu, state="up", peer=peer)
            return host
        except Exception as exc:
            if _code(exc) != errno.EEXIST:
                raise NetworkError(
                    f"create veth pair {host}/{ifname} in {target.label}: {_reason(exc)}"
                ) from exc
            if _get_link(ipr, host, target) is None:
                raise NetworkError(
                    f"create veth pair {host}/{ifname}: {ifname} already exists in {inside.label}"
                ) from exc
            if host_ifname is not None:
                raise NetworkError(f"link {host} already exists in {target.label}") from exc
        finally:
            os.close(fd)
    raise NetworkError(f"no free veth name in {target.label} after 3 tries")


def _configure_inside(
    container: _Handle, ifname: str, wanted: list[Interface], via: list[Address], inside: _Target
) -> None:
    cipr = container.ipr
    index = _ifindex(container, ifname, inside)
    if index is None:
        raise NetworkError(f"{ifname} did not appear in {inside.label}")
    for iface in wanted:
        _add_address(cipr, index, ifname, iface, inside)
    _set_up(container, ifname, inside)
    for gateway in via:
        family = socket.AF_INET if gateway.version == 4 else socket.AF_INET6
        dst = "0.0.0.0/0" if gateway.version == 4 else "::/0"
        route = partial(cipr.route, "add", dst=dst, gateway=str(gateway), oif=index, family=family)
        _step(f"add default route via {gateway} on {ifname}", inside, route)
