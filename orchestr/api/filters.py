"""The `filters` query parameter of the Engine API's list endpoints.

Docker clients encode it two ways, `{"name": ["web"]}` and the older
`{"name": {"web": true}}`; both are read. A key the endpoint does not know is dockerd's
400 "invalid filter 'KEY'".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestr.api.http import HttpError

Filters = Mapping[str, Any]  # {key: [values]} or {key: {value: true}}


def filter_values(filters: Filters, key: str) -> list[str]:
    """A filter's values, from either encoding: {key: [v…]} or {key: {v: true}}."""
    value = filters.get(key)
    if value is None:
        return []
    if isinstance(value, dict):
        return [str(k) for k, on in value.items() if on]
    if isinstance(value, list):
        return [str(v) for v in value]
    raise HttpError(400, f"invalid filter '{key}': expected a list of values")


def parse_filters(raw: object, allowed: frozenset[str]) -> dict[str, list[str]]:
    """The `filters` query parameter (already JSON-decoded), checked against `allowed`."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise HttpError(400, "filters: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key in raw:
        if key not in allowed:
            raise HttpError(400, f"invalid filter '{key}'")
        out[key] = filter_values(raw, key)
    return out
