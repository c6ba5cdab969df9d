"""Node networking: the seam between containers and network drivers.

A driver *describes* what a container's network is (containerd's "describe,
don't do", as snapshotters return mounts): which network namespace the
container gets (`namespace`: a new one, the node's, or a path to join), what
its /etc/hosts and /etc/resolv.conf say, and the warnings to give the user.
The container service turns that into runtime spec options. Drivers that
make kernel objects (the bridge and overlay drivers of later issues) will add
`attach`/`detach` steps that return link and address operations to apply;
`none` and `host` have nothing to set up.

Drivers today: `none` (a namespace with only `lo`), `host` (the node's
namespace and names), and `default`/`bridge`, which until the bridge driver
exists behave as `none` and say so.
"""

from __future__ import annotations

from agent.network.base import Endpoint, NetworkDriver, NetworkError
from agent.network.simple import HostDriver, NoneDriver, driver_for

__all__ = ["Endpoint", "HostDriver", "NetworkDriver", "NetworkError", "NoneDriver", "driver_for"]
