"""Which manifest of an index is this machine's (image-index.md)."""

from __future__ import annotations

from agent.content import Descriptor
from agent.images.importer import platform_architecture


def pick_manifest(children: list[Descriptor]) -> Descriptor | None:
    """The child for linux/<this machine>; an index of one unlabelled child gives
    that child; None when there is no match (see `missing_platform`)."""
    arch = platform_architecture()
    for child in children:
        if child.platform and child.platform.os == "linux" and child.platform.architecture == arch:
            return child
    if len(children) == 1 and children[0].platform is None:
        return children[0]
    return None


def missing_platform(children: list[Descriptor]) -> str:
    """The error text when `pick_manifest` found nothing."""
    have = ", ".join(f"{c.platform.os}/{c.platform.architecture}" for c in children if c.platform)
    return f"no manifest for linux/{platform_architecture()} (has: {have or 'none'})"
