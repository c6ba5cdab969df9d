"""Merging Compose documents, as Docker Compose v2 (compose-go's `override` package) does it.

`merge(base, other)` lays a whole document `other` over `base` (what `-f a.yaml -f b.yaml`
does); `merge_service(base, other)` lays one service definition over another (what
`extends` does: the extending service is `other`). Inputs are plain trees as loaded from
YAML and interpolated, *before* short syntax is normalised, so any attribute may be in its
short or long form. Neither input is mutated; the result shares nothing with them.

The rules (paths below are relative to the document; `*` is any key):

- Mappings merge key by key, recursively; a key only on one side is kept as is.
- Sequences append (`other`'s items after `base`'s); scalars are replaced.
- A null in `other` keeps `base`'s value (except for the replaced attributes below,
  where `command: null` does clear it); a null in `base` takes `other`'s value.
- A mapping or sequence in `base` with a value of another kind in `other` is a
  `StackError` ("cannot merge"); a scalar in `base` is replaced by anything.
- Replaced wholesale, not merged: `services.*.command`, `entrypoint`,
  `healthcheck.test`, and each `services.*.ulimits.<name>` (compose-go's `mergeUlimit`
  returns the override, so `nofile: {soft: 1, hard: 2}` + `nofile: {soft: 3}` gives
  `{soft: 3}`).
- Key/value attributes merge as mappings whichever form each side has (`"K=V"` list
  items become `{K: V}`, a bare `"K"` becomes `{K: None}`); when both sides have the
  attribute the result is a **mapping** (base's keys first, in their order; a key that is
  overridden keeps its place). They are `environment`, `labels`, `annotations`,
  `sysctls`, `build.args`, `build.labels`, `build.additional_contexts`, `deploy.labels`
  of a service, and `labels` of top-level networks, volumes, secrets and configs.
- `extra_hosts` and `build.extra_hosts` merge as a **list**: mapping entries become
  `"host=ip"` (sorted, one per IP when the value is a list), then `other`'s entries not
  already in `base` (same text) are appended. The same host may map to several IPs.
- `depends_on`, service `networks` and `models` merge as mappings: a list of names
  becomes `{name: {condition: service_started, required: true}}` for `depends_on` and
  `{name: None}` for the others; the result is a mapping.
- `build`: a string is `{context: <string>}`; the result is a mapping.
- `logging`: when both sides name a `driver` and the drivers differ, `other` replaces
  `base` wholesale (base's options are dropped); otherwise the mappings merge.
- Sequences with a unique key: after appending, an item whose key was already seen
  replaces the earlier item *in the earlier item's place* (later wins, no deep merge):
  `ports` by (host_ip, published, target, protocol) of the parsed short or long form
  (defaults 0.0.0.0, none, tcp); `volumes` and `devices` by target; service `secrets`
  by `target`, else `/run/secrets/<source>`; service `configs` by `target`, else
  `/<source>`; `env_file` by path; `expose` by its text; `cap_add`, `cap_drop`, `dns`,
  `dns_opt`, `dns_search`, `tmpfs`, `profiles`, `links`, `build.tags`,
  `build.platforms`, `networks.*.aliases` and `networks.*.link_local_ips` of a service by
  the text before the first `=` (the whole item, mostly). A string where a list is
  expected (`dns: 8.8.8.8`, `tmpfs: /run`, `env_file: a.env`) is a one-item list.
- Appended without de-duplication (as compose-go): `security_opt`, `label_file`,
  `device_cgroup_rules`, `external_links`, `volumes_from`, `group_add`, `include`, ...
- `networks.*.ipam.config` (top level) merges by `subnet`: an entry of `other` with the
  subnet of an entry of `base` is merged into it, a new subnet is appended.
- Tags (`tags` maps a path in `other` to "reset" or "override"): a "reset" path is
  removed from the result (base's value is dropped; the key is absent from `other`
  already); an "override" path takes `other`'s value wholesale. Tags work at any depth
  through mappings, including a whole service and single keys of key/value attributes
  whichever form `base` used (`environment: {FOO: !reset}` drops `FOO=bar` from a list).

Where this differs from compose-go (on purpose, or where the spec text differs):

- compose-go turns key/value attributes into a sorted `"K=V"` list when merging (and
  de-duplicates by key later); here they become a mapping. Values are kept as they are
  (compose-go formats them as text: `FOO: 1` becomes `"FOO=1"`).
- compose-go de-duplicates every unique-keyed list of the whole document after each
  file; here only lists that two documents were merged into are de-duplicated, so
  `merge(doc, {})` is `doc`. Duplicates inside one file are the normaliser's to remove.
- compose-go compares short ports as raw text when merging and only catches
  `"8080:80"` vs `{target: 80, published: 8080}` after its canonical pass; here short
  ports are parsed first (ranges such as `"8000-8001:80-81"` are not expanded and count
  as one key).
- The spec says entries sharing a unique key are "merged"; compose-go (and this)
  replaces the earlier entry with the later one. The spec's `extends` text says
  `security_opt`, `configs`, `expose`... are de-duplicated and `dns`/`tmpfs` are not;
  compose-go de-duplicates `dns`/`dns_search`/`tmpfs` but not `security_opt`.
- compose-go's ipam-config merge drops base entries whose subnet `other` lacks; here
  they are kept.
- compose-go ignores `!reset` on a single key when base used the list form
  (`environment: [FOO=bar]`); here it removes the key. Tags on sequence items (an index
  in the path) are ignored, as compose-go does.
- Labels of top-level secrets and configs merge across forms here; compose-go reports
  "cannot override" when one is a list and the other a mapping.
- `merge_service` leaves `extends` in the result (compose-go's loader deletes it after
  merging); removing it is the caller's job.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Final

from orchestr.stack.errors import StackError

__all__ = [
    "Path",
    "list_or_mapping",
    "mapping_from_list",
    "merge",
    "merge_service",
    "port_key",
    "volume_target",
]

Path = tuple[str | int, ...]
"""Where a value is in a document: `("services", "web", "ports", 1)`."""

_Rule = tuple[str, ...]
_Merger = Callable[["_Merge", object, object, Path, _Rule], object]
_KeyFn = Callable[[object, Path], Hashable | None]

_NO_TAGS: Mapping[Path, str] = {}
_SERVICE_RULE: Final[_Rule] = ("services", "*")
_DEPENDS_ON_DEFAULT: Final[Mapping[str, object]] = {
    "condition": "service_started",
    "required": True,
}


def merge(
    base: Mapping[str, object],
    other: Mapping[str, object],
    *,
    tags: Mapping[Path, str] = _NO_TAGS,
) -> dict[str, object]:
    """The Compose document `other` merged onto `base` (neither is mutated)."""
    return _Merge(tags).mapping(base, other, (), ())


def merge_service(
    base: Mapping[str, object],
    other: Mapping[str, object],
    *,
    tags: Mapping[Path, str] = _NO_TAGS,
    path: Path = (),
) -> dict[str, object]:
    """The service definition `other` merged onto `base` (as `extends` does).

    `path` is where `other` sits in its document (`("services", "web")`): tag paths and
    error paths are in document coordinates.
    """
    return _Merge(tags).mapping(base, other, path, _SERVICE_RULE)


# ---------------------------------------------------------------- list/mapping helpers


def mapping_from_list(
    items: list[object] | tuple[object, ...], sep: str = "=", *, path: Path = ()
) -> dict[str, object]:
    """`["A=1", "B"]` → `{"A": "1", "B": None}` (a later duplicate key wins)."""
    result: dict[str, object] = {}
    for index, item in enumerate(items):
        if isinstance(item, Mapping | list | tuple) or item is None:
            raise StackError(
                f"expected a {'KEY' + sep + 'VALUE'} string, got {_kind(item)}",
                path=(*path, index),
            )
        text = item if isinstance(item, str) else _scalar_text(item)
        key, found, value = text.partition(sep)
        result[key] = value if found else None
    return result


def list_or_mapping(value: object, sep: str = "=", *, path: Path = ()) -> dict[str, object]:
    """A list-or-dict attribute as a mapping: a mapping is copied, a list is converted
    with `mapping_from_list`, a single string is a one-item list, None is empty."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return mapping_from_list(value, sep, path=path)
    if isinstance(value, str):
        return mapping_from_list([value], sep, path=path)
    raise StackError(f"expected a list or a mapping, got {_kind(value)}", path=path)


def port_key(port: object, *, path: Path = ()) -> tuple[str, str, str, str]:
    """The unique key of a port, short or long form: (host_ip, published, target, protocol).

    `"127.0.0.1:8080:80/udp"` → `("127.0.0.1", "8080", "80", "udp")`; `80` →
    `("0.0.0.0", "", "80", "tcp")`. A missing host_ip is 0.0.0.0, a missing published
    port is "", a missing protocol is tcp.
    """
    if isinstance(port, bool) or port is None or isinstance(port, list | tuple):
        raise StackError(f"expected a port, got {_kind(port)}", path=path)
    if isinstance(port, Mapping):
        if port.get("target") is None:
            raise StackError("port mapping has no target", path=path)
        return (
            _text(port.get("host_ip")) or "0.0.0.0",
            _text(port.get("published")),
            _text(port.get("target")),
            (_text(port.get("protocol")) or "tcp").lower(),
        )
    text = _scalar_text(port)
    rest, slash, protocol = text.rpartition("/")
    if not slash:
        rest, protocol = text, "tcp"
    host_ip, published, target = "", "", rest
    if ":" in rest:
        head, _, target = rest.rpartition(":")
        host_ip, colon, published = head.rpartition(":")
        if not colon:
            host_ip, published = "", head
    host_ip = host_ip.removeprefix("[").removesuffix("]")
    return (host_ip or "0.0.0.0", published, target, (protocol or "tcp").lower())


def volume_target(volume: object, *, path: Path = ()) -> str:
    """The container path of a service volume: `"./data:/data:ro"` → `"/data"`, `"/data"`
    → `"/data"` (anonymous), `{target: /data, ...}` → `"/data"`. Windows drive letters
    in the source (`C:\\x:/data`) are understood."""
    if isinstance(volume, Mapping):
        target = volume.get("target")
        if not isinstance(target, str) or not target:
            raise StackError("volume has no target", path=path)
        return target
    if not isinstance(volume, str):
        raise StackError(f"expected a volume, got {_kind(volume)}", path=path)
    parts = volume.split(":")
    if _drive_letter_source(parts):
        parts = [parts[0] + ":" + parts[1], *parts[2:]]
    return parts[0] if len(parts) == 1 else parts[1]


def _drive_letter_source(parts: list[str]) -> bool:
    """`C:\\x:/data` split on ":" — a one-letter part, a path, then a container path (so
    a volume named `a` in `a:/a:ro` is not taken for a drive)."""
    if len(parts) < 3 or len(parts[0]) != 1 or not parts[0].isalpha():
        return False
    return parts[1][:1] in ("\\", "/") and parts[2][:1] in ("\\", "/")


# ---------------------------------------------------------------------- the merger


class _Merge:
    """One merge: the tags, and the walk over both trees."""

    def __init__(self, tags: Mapping[Path, str]) -> None:
        for where, tag in tags.items():
            if tag not in ("reset", "override"):
                raise StackError(f"unknown tag !{tag}", path=where)
        self.tags = tags

    def value(self, base: object, other: object, path: Path, rule: _Rule) -> object:
        merger = _rule_for(rule)
        if base is None:
            return _copy(other)
        if other is None and merger is not _override:
            return _copy(base)
        if merger is not None:
            return merger(self, base, other, path, rule)
        if isinstance(base, Mapping):
            if not isinstance(other, Mapping):
                raise _mismatch(base, other, path)
            return self.mapping(base, other, path, rule)
        if isinstance(base, list | tuple):
            if not isinstance(other, list | tuple):
                raise _mismatch(base, other, path)
            return [*_copy_list(base), *_copy_list(other)]
        return _copy(other)

    def mapping(
        self, base: Mapping[str, object], other: Mapping[str, object], path: Path, rule: _Rule
    ) -> dict[str, object]:
        result: dict[str, object] = {}
        for key, value in base.items():
            where = (*path, key)
            tag = self.tags.get(where)
            if tag == "reset":
                continue
            if key not in other:
                result[key] = _copy(value)
            elif tag == "override":
                result[key] = _copy(other[key])
            else:
                result[key] = self.value(value, other[key], where, (*rule, key))
        for key, value in other.items():
            if key not in base and self.tags.get((*path, key)) != "reset":
                result[key] = _copy(value)
        return result

    def drop_tagged(self, mapping: dict[str, object], path: Path) -> dict[str, object]:
        """`mapping` without the keys tagged reset or override at `path` (base side)."""
        return {k: v for k, v in mapping.items() if (*path, k) not in self.tags}


# ----------------------------------------------------------------- the special rules


def _override(m: _Merge, base: object, other: object, path: Path, rule: _Rule) -> object:
    return _copy(other)


def _key_value(m: _Merge, base: object, other: object, path: Path, rule: _Rule) -> object:
    left = list_or_mapping(base, path=path)
    right = list_or_mapping(other, path=path)
    return m.mapping(left, right, path, rule)


def _names_to_mapping(default: Mapping[str, object] | None) -> _Merger:
    def convert(value: object, path: Path) -> dict[str, object]:
        if isinstance(value, Mapping):
            return {str(k): v for k, v in value.items()}
        if isinstance(value, list | tuple):
            names = [_scalar_text(item) for item in value]
            return {name: None if default is None else dict(default) for name in names}
        raise StackError(f"expected a list or a mapping, got {_kind(value)}", path=path)

    def merger(m: _Merge, base: object, other: object, path: Path, rule: _Rule) -> object:
        return m.mapping(convert(base, path), convert(other, path), path, rule)

    return merger


def _build(m: _Merge, base: object, other: object, path: Path, rule: _Rule) -> object:
    def convert(value: object) -> Mapping[str, object]:
        if isinstance(value, str):
            return {"context": value}
        if isinstance(value, Mapping):
            return value
        raise StackError(f"expected a string or a mapping, got {_kind(value)}", path=path)

    return m.mapping(convert(base), convert(other), path, rule)


def _logging(m: _Merge, base: object, other: object, path: Path, rule: _Rule) -> object:
    if not isinstance(base, Mapping) or not isinstance(other, Mapping):
        raise _mismatch(base, other, path)
    if "driver" in base and "driver" in other and base["driver"] != other["driver"]:
        return _copy(other)
    return m.mapping(base, other, path, rule)


def _extra_hosts(m: _Merge, base: object, other: object, path: Path, rule: _Rule) -> object:
    def entries(value: object, *, is_base: bool) -> list[object]:
        if isinstance(value, Mapping):
            mapping = {str(k): v for k, v in value.items()}
            if is_base:
                mapping = m.drop_tagged(mapping, path)
            found: list[object] = []
            for host, ips in mapping.items():
                if ips is None:
                    found.append(host)
                elif isinstance(ips, list | tuple):
                    found.extend(f"{host}={_scalar_text(ip)}" for ip in ips)
                else:
                    found.append(f"{host}={_scalar_text(ips)}")
            return sorted(found, key=str)
        return _as_list(value, path)

    left = entries(base, is_base=True)
    right = entries(other, is_base=False)
    return [*left, *(item for item in right if item not in left)]


def _unique(key_fn: _KeyFn | None) -> _Merger:
    def merger(m: _Merge, base: object, other: object, path: Path, rule: _Rule) -> object:
        items = [*_as_list(base, path), *_as_list(other, path)]
        if key_fn is None:
            return items
        result: list[object] = []
        seen: dict[Hashable, int] = {}
        for index, item in enumerate(items):
            key = key_fn(item, (*path, index))
            if key is None:
                result.append(item)
            elif key in seen:
                result[seen[key]] = item
            else:
                seen[key] = len(result)
                result.append(item)
        return result

    return merger


def _ipam_config(m: _Merge, base: object, other: object, path: Path, rule: _Rule) -> object:
    result = _as_list(base, path)
    for index, entry in enumerate(_as_list(other, path)):
        subnet = entry.get("subnet") if isinstance(entry, Mapping) else None
        for position, existing in enumerate(result):
            if (
                subnet is not None
                and isinstance(entry, Mapping)
                and isinstance(existing, Mapping)
                and existing.get("subnet") == subnet
            ):
                result[position] = m.mapping(existing, entry, (*path, index), rule)
                break
        else:
            result.append(entry)
    return result


# ------------------------------------------------------------------------ unique keys


def _text_key(item: object, path: Path) -> Hashable | None:
    """The text before the first `=` (keyValueIndexer); mappings are never de-duplicated."""
    if isinstance(item, str):
        return item.partition("=")[0]
    if isinstance(item, int | float) and not isinstance(item, bool):
        return _scalar_text(item)
    return None


def _expose_key(item: object, path: Path) -> Hashable | None:
    if isinstance(item, str | int) and not isinstance(item, bool):
        return str(item)
    return None


def _env_file_key(item: object, path: Path) -> Hashable | None:
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping):
        where = item.get("path")
        if not isinstance(where, str):
            raise StackError("env_file entry has no path", path=path)
        return where
    return None


def _port_key(item: object, path: Path) -> Hashable | None:
    return port_key(item, path=path)


def _volume_key(item: object, path: Path) -> Hashable | None:
    return volume_target(item, path=path)


def _device_key(item: object, path: Path) -> Hashable | None:
    if isinstance(item, str):
        parts = item.split(":")
        return parts[0] if len(parts) == 1 else parts[1]
    if isinstance(item, Mapping):
        target = item.get("target")
        if not isinstance(target, str):
            raise StackError("device has no target", path=path)
        return target
    return None


def _mount_key(directory: str) -> _KeyFn:
    def key(item: object, path: Path) -> Hashable | None:
        if isinstance(item, str):
            return f"{directory}/{item}"
        if isinstance(item, Mapping):
            target = item.get("target")
            if target is not None:
                return _scalar_text(target)
            return f"{directory}/{_text(item.get('source'))}"
        return None

    return key


_RULES: Final[dict[_Rule, _Merger]] = {
    ("services", "*", "command"): _override,
    ("services", "*", "entrypoint"): _override,
    ("services", "*", "healthcheck", "test"): _override,
    ("services", "*", "ulimits", "*"): _override,
    ("services", "*", "environment"): _key_value,
    ("services", "*", "labels"): _key_value,
    ("services", "*", "annotations"): _key_value,
    ("services", "*", "sysctls"): _key_value,
    ("services", "*", "build", "args"): _key_value,
    ("services", "*", "build", "labels"): _key_value,
    ("services", "*", "build", "additional_contexts"): _key_value,
    ("services", "*", "deploy", "labels"): _key_value,
    ("networks", "*", "labels"): _key_value,
    ("volumes", "*", "labels"): _key_value,
    ("secrets", "*", "labels"): _key_value,
    ("configs", "*", "labels"): _key_value,
    ("services", "*", "extra_hosts"): _extra_hosts,
    ("services", "*", "build", "extra_hosts"): _extra_hosts,
    ("services", "*", "depends_on"): _names_to_mapping(_DEPENDS_ON_DEFAULT),
    ("services", "*", "networks"): _names_to_mapping(None),
    ("services", "*", "models"): _names_to_mapping(None),
    ("services", "*", "build"): _build,
    ("services", "*", "logging"): _logging,
    ("networks", "*", "ipam", "config"): _ipam_config,
    ("services", "*", "ports"): _unique(_port_key),
    ("services", "*", "volumes"): _unique(_volume_key),
    ("services", "*", "devices"): _unique(_device_key),
    ("services", "*", "secrets"): _unique(_mount_key("/run/secrets")),
    ("services", "*", "configs"): _unique(_mount_key("")),
    ("services", "*", "env_file"): _unique(_env_file_key),
    ("services", "*", "label_file"): _unique(None),
    ("services", "*", "expose"): _unique(_expose_key),
    ("services", "*", "networks", "*", "aliases"): _unique(_text_key),
    ("services", "*", "networks", "*", "link_local_ips"): _unique(_text_key),
    ("services", "*", "build", "tags"): _unique(_text_key),
    ("services", "*", "build", "platforms"): _unique(_text_key),
    **{
        ("services", "*", name): _unique(_text_key)
        for name in (
            "cap_add",
            "cap_drop",
            "dns",
            "dns_opt",
            "dns_search",
            "tmpfs",
            "profiles",
            "links",
        )
    },
}


def _rule_for(rule: _Rule) -> _Merger | None:
    for pattern, merger in _RULES.items():
        if len(pattern) == len(rule) and all(
            want in ("*", part) for want, part in zip(pattern, rule, strict=True)
        ):
            return merger
    return None


# -------------------------------------------------------------------------- plumbing


def _copy(value: object) -> object:
    """A deep copy of a plain tree (mappings become dicts, tuples become lists)."""
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return _copy_list(value)
    return value


def _copy_list(value: list[object] | tuple[object, ...]) -> list[object]:
    return [_copy(item) for item in value]


def _as_list(value: object, path: Path) -> list[object]:
    """A sequence attribute as a (copied) list: a lone scalar is a one-item list."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return _copy_list(value)
    if isinstance(value, Mapping):
        raise StackError("expected a list, got a mapping", path=path)
    return [value]


def _scalar_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _text(value: object) -> str:
    return "" if value is None else _scalar_text(value)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"the {type(value).__name__} {value!r}"


def _mismatch(base: object, other: object, path: Path) -> StackError:
    return StackError(
        f"cannot merge {_kind(other)} onto {_kind(base)}",
        path=path,
        hint="both files must use the same kind of value here, or tag it !override",
    )
