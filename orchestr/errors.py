"""orchestr's exception tree (control plane and CLI).

OrchestrError            one readable line; the CLI prints it without a traceback
 └─ NotSupportedError    a feature that is not built yet; never a silent success
"""

from __future__ import annotations


class OrchestrError(Exception):
    """Base of the errors the CLI shows as one line (detail with --debug)."""


class NotSupportedError(OrchestrError):
    """The feature exists in Docker/Compose/Swarm but not in orchestr yet."""
