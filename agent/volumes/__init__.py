"""Volumes: Docker's `local` driver — named directories that outlive containers.

`VolumeStore(root)` creates, lists, removes and prunes them; `copy_up` fills a
fresh volume from the image's content at its mount point (the container side
calls it on first mount). See docs/design/volumes.md.

Errors:

    ValueError              bad input: a name, an option, a filter (HTTP 400)
    VolumeError             the base of the others
     ├─ NoSuchVolume        "get NAME: no such volume" (404)
     ├─ VolumeInUse         "remove NAME: volume is in use - [ids]" (409)
     └─ VolumeConflict      a create under a taken name asking for other options (409)
"""

from __future__ import annotations

from agent.volumes.local import (
    ANONYMOUS_LABEL,
    NoSuchVolume,
    Volume,
    VolumeConflict,
    VolumeError,
    VolumeFilters,
    VolumeInUse,
    VolumeStore,
    VolumeUsage,
    copy_up,
    validate_name,
    validate_options,
)

__all__ = [
    "ANONYMOUS_LABEL",
    "NoSuchVolume",
    "Volume",
    "VolumeConflict",
    "VolumeError",
    "VolumeFilters",
    "VolumeInUse",
    "VolumeStore",
    "VolumeUsage",
    "copy_up",
    "validate_name",
    "validate_options",
]
