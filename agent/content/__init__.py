"""Content: a digest-addressed blob store, the bottom of the image service.

Everything an image is made of (index, manifests, configs, layers) is a blob
here, named by its digest, laid out like an OCI image layout's `blobs/`
directory. See `store` for the layout, resumable ingests and the error tree.
"""

from __future__ import annotations

from agent.content.store import (
    ALGORITHMS,
    OCTET_STREAM,
    ContentError,
    ContentStore,
    Descriptor,
    Digest,
    DigestMismatch,
    Ingest,
    IngestLocked,
    NotFound,
    Platform,
    SizeMismatch,
    Writer,
)

__all__ = [
    "ALGORITHMS",
    "OCTET_STREAM",
    "ContentError",
    "ContentStore",
    "Descriptor",
    "Digest",
    "DigestMismatch",
    "Ingest",
    "IngestLocked",
    "NotFound",
    "Platform",
    "SizeMismatch",
    "Writer",
]
