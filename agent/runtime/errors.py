"""The runtime's exceptions.

RuntimeError_ (base: one readable line, shown without a traceback)
 ├─ BundleError          the bundle or its config.json is wrong
 │   └─ NotSupportedError   valid per the spec, not built yet
 ├─ ContainerNotFound    no container with that id
 ├─ ContainerExists      the id is taken
 └─ StateError           the container is in the wrong state for the call
"""

from __future__ import annotations


class RuntimeError_(Exception):
    """Base of every error the runtime reports as one line."""


class BundleError(RuntimeError_):
    pass


class NotSupportedError(BundleError):
    pass


class ContainerNotFound(RuntimeError_):
    pass


class ContainerExists(RuntimeError_):
    pass


class StateError(RuntimeError_):
    pass
