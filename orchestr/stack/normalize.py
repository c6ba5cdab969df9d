"""Short syntaxes to long ones: the canonical Compose document that everything after the
loader sees (and that `orchestr config` prints).

Input: one merged, interpolated, schema-valid document (plain data). Output: a new
document in which every attribute has one form, the long one `docker compose config`
prints:

- `command`/`entrypoint` strings are split as a shell would (shlex, POSIX rules);
- `environment`, `labels`, `annotations`, `sysctls`, build `args`/`labels`: mappings of
  strings; an `environment` entry without a value takes the variable from the project's
  environment, or stays `null`; `env_file` entries are read (relative to the project
  directory) and merged under `environment`, then dropped, as Compose does;
- `ports`: long mappings `{mode, host_ip, target, published, protocol}`; a range expands
  to one entry per port; `published` is a string (it may be a range);
- `expose`: strings; `volumes`: long mappings with `type` (bind when the source starts
  with `.`, `/` or `~`, volume otherwise), relative and `~` sources made absolute;
- `depends_on`: `{name: {condition, required, restart}}`; service `networks`:
  `{name: {aliases, ipv4_address, ...} | null}` with `default` when none is named;
- `healthcheck.test` strings become `["CMD-SHELL", text]`, `disable: true` becomes
  `["NONE"]`; durations are Go duration strings (`1m30s`); byte sizes are integers;
- `ulimits` integers become `{soft, hard}`; `build` strings become `{context}` with an
  absolute context and `dockerfile` defaulting to `Dockerfile`;
- service `secrets`/`configs` strings become `{source}`; top-level networks, volumes,
  secrets and configs get their `name` (`<project>_<key>`, or the key when external);
  file-based secrets and configs get absolute paths; the `default` network is added when a
  service uses it.

Errors are StackError with the field's path (the loader adds the file and line).
"""

from __future__ import annotations

import os
import posixpath
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from orchestr.api.ports import PortError, parse_publish
from orchestr.stack.dotenv import DotenvError, read_dotenv
from orchestr.stack.errors import StackError
from orchestr.stack.interpolate import Lookup
from orchestr.stack.units import UnitError, format_duration, parse_bytes, parse_duration

__all__ = ["Context", "normalize"]

Doc = dict[str, Any]
Path = tuple[str | int, ...]


class Context:
    """What normalising needs beyond the document: where it lives and its environment."""

    def __init__(
        self,
        project: str,
        working_dir: str,
        lookup: Lookup,
        *,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.project = project
        self.working_dir = working_dir
        self.lookup = lookup
        self.warn = warn

    def path(self, value: str) -> str:
        """A host path from the file: `~` expanded (the project environment's HOME, as
        Compose does), relative to the project directory."""
        if value == "~" or value.startswith("~/"):
            home = self.lookup("HOME") or os.path.expanduser("~")
            value = home + value[1:]
        return os.path.normpath(os.path.join(self.working_dir, value))


def normalize(doc: Mapping[str, Any], ctx: Context) -> Doc:
    """The canonical form of a merged Compose document (a new tree)."""
    out: Doc = {"name": ctx.project}
    services = {
        name: _service(service or {}, ctx, ("services", name))
        for name, service in (doc.get("services") or {}).items()
    }
    out["services"] = services
    networks = {
        key: _resource(value, key, ctx, ("networks", key))
        for key, value in (doc.get("networks") or {}).items()
    }
    if "default" not in networks and any(
        "default" in (s.get("networks") or {}) for s in services.values()
    ):
        networks["default"] = {"name": f"{ctx.project}_default"}
    if networks:
        out["networks"] = networks
    for section in ("volumes", "secrets", "configs"):
        items = {
            key: _resource(value, key, ctx, (section, key))
            for key, value in (doc.get(section) or {}).items()
        }
        if items:
            out[section] = items
    for key, value in doc.items():
        if key.startswith("x-"):
            out[key] = value
    return out


# -- services -------------------------------------------------------------------------


def _service(raw: Mapping[str, Any], ctx: Context, path: Path) -> Doc:
    svc: Doc = dict(raw)
    if "build" in svc:
        svc["build"] = _build(svc["build"], ctx, (*path, "build"))
    for key in ("command", "entrypoint"):
        if isinstance(svc.get(key), str):
            svc[key] = _split_command(svc[key], (*path, key))
    environment = _environment(svc, ctx, path)
    svc.pop("env_file", None)
    if environment or "environment" in raw:
        svc["environment"] = environment
    for key in ("labels", "annotations", "sysctls"):
        if key in svc:
            svc[key] = _string_map(svc[key], (*path, key))
    if "ports" in svc:
        svc["ports"] = _ports(svc["ports"], (*path, "ports"))
    if "expose" in svc:
        svc["expose"] = [str(p) for p in svc["expose"]]
    if "volumes" in svc:
        svc["volumes"] = [
            _volume(v, ctx, (*path, "volumes", i)) for i, v in enumerate(svc["volumes"])
        ]
    if "tmpfs" in svc and isinstance(svc["tmpfs"], str):
        svc["tmpfs"] = [svc["tmpfs"]]
    for key in ("dns", "dns_search", "env_file"):
        if isinstance(svc.get(key), str):
            svc[key] = [svc[key]]
    if "depends_on" in svc:
        svc["depends_on"] = _depends_on(svc["depends_on"])
    if "network_mode" not in svc:
        svc["networks"] = _service_networks(svc.get("networks"))
    elif svc.get("networks"):
        raise StackError(
            "network_mode and networks cannot be combined", path=(*path, "network_mode")
        )
    if "healthcheck" in svc:
        svc["healthcheck"] = _healthcheck(svc["healthcheck"] or {}, (*path, "healthcheck"))
    for key in ("stop_grace_period",):
        if key in svc:
            svc[key] = _duration(svc[key], (*path, key))
    for key in ("mem_limit", "mem_reservation", "memswap_limit", "shm_size"):
        if key in svc and svc[key] is not None:
            svc[key] = _bytes(svc[key], (*path, key))
    if "cpus" in svc:
        svc["cpus"] = _float(svc["cpus"], (*path, "cpus"))
    if "ulimits" in svc:
        svc["ulimits"] = {
            name: {"soft": v, "hard": v} if isinstance(v, int) else dict(v)
            for name, v in svc["ulimits"].items()
        }
    if "extra_hosts" in svc:
        svc["extra_hosts"] = _extra_hosts(svc["extra_hosts"], (*path, "extra_hosts"))
    for key in ("secrets", "configs"):
        if key in svc:
            svc[key] = [{"source": s} if isinstance(s, str) else dict(s) for s in svc[key]]
    if svc.get("deploy"):
        svc["deploy"] = _deploy(svc["deploy"], (*path, "deploy"))
    if svc.get("logging"):
        logging = dict(svc["logging"])
        if "options" in logging:
            logging["options"] = _string_map(logging["options"] or {}, (*path, "logging"))
        svc["logging"] = logging
    return svc


def _split_command(text: str, path: Path) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise StackError(f"cannot split {text!r} into words: {exc}", path=path) from None


def _build(value: Any, ctx: Context, path: Path) -> Doc:
    build: Doc = {"context": value} if isinstance(value, str) else dict(value)
    context = str(build.get("context") or ".")
    if "://" not in context and not context.startswith("git@"):
        context = ctx.path(context)
    build["context"] = context
    if "dockerfile_inline" not in build:
        build.setdefault("dockerfile", "Dockerfile")
    for key in ("args", "labels"):
        if key in build:
            build[key] = _string_map(build[key], (*path, key), keep_null=True)
    return build


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _string_map(value: Any, path: Path, *, keep_null: bool = False) -> dict[str, str | None]:
    """A list of `K=V` (or `K`) or a mapping → {K: V}; null values stay null or become ""."""
    out: dict[str, str | None] = {}
    if isinstance(value, list):
        for item in value:
            key, sep, val = str(item).partition("=")
            out[key] = val if sep else (None if keep_null else "")
        return out
    for key, val in (value or {}).items():
        out[str(key)] = None if val is None and keep_null else _scalar("" if val is None else val)
    return out


def _environment(svc: Mapping[str, Any], ctx: Context, path: Path) -> dict[str, str | None]:
    """env_file entries first, then `environment`; unset values looked up in the project."""
    out: dict[str, str | None] = {}
    files = svc.get("env_file")
    if files is not None:
        entries = [files] if isinstance(files, str) else list(files)
        for i, entry in enumerate(entries):
            spec = {"path": entry} if isinstance(entry, str) else dict(entry)
            file = ctx.path(str(spec["path"]))
            try:
                out.update(
                    read_dotenv(
                        file,
                        lookup=ctx.lookup,
                        required=bool(spec.get("required", True)),
                        format=spec.get("format"),
                        warn=ctx.warn,
                    )
                )
            except DotenvError as exc:
                raise StackError(str(exc), path=(*path, "env_file", i)) from None
    explicit = _string_map(svc.get("environment") or {}, (*path, "environment"), keep_null=True)
    for key, value in explicit.items():
        out[key] = ctx.lookup(key) if value is None else value
    return out


def _ports(value: list[Any], path: Path) -> list[Doc]:
    out: list[Doc] = []
    for i, item in enumerate(value):
        where = (*path, i)
        if isinstance(item, dict):
            port = dict(item)
            port.setdefault("mode", "ingress")
            port.setdefault("protocol", "tcp")
            if port.get("published") is not None:
                port["published"] = str(port["published"])
            if isinstance(port.get("target"), str):
                try:
                    port["target"] = int(port["target"])
                except ValueError:
                    raise StackError(
                        f"target {port['target']!r} is not a port", path=where
                    ) from None
            out.append(port)
            continue
        spec = str(item)
        try:
            _, bindings = parse_publish([spec])
        except PortError as exc:
            raise StackError(
                f"{spec!r} is not a port mapping: {exc}",
                path=where,
                hint='[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], e.g. "8080:80"',
            ) from None
        for key, entries in bindings.items():
            number, _, proto = key.partition("/")
            for binding in entries:
                port = {"mode": "ingress", "target": int(number), "protocol": proto}
                if binding["HostIp"]:
                    port["host_ip"] = binding["HostIp"]
                if binding["HostPort"]:
                    port["published"] = binding["HostPort"]
                out.append(port)
    return out


_VOLUME_MODES = {"ro", "rw", "z", "Z", "nocopy", "shared", "rshared", "slave", "rslave"}
_VOLUME_MODES |= {"private", "rprivate", "consistent", "cached", "delegated"}


def _is_path(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def _volume(item: Any, ctx: Context, path: Path) -> Doc:
    volume: Doc
    if isinstance(item, dict):
        volume = dict(item)
        if isinstance(volume.get("target"), str) and volume["target"].startswith("/"):
            volume["target"] = posixpath.normpath(volume["target"])
        if volume.get("type") == "bind" and volume.get("source"):
            volume["source"] = ctx.path(str(volume["source"]))
        return volume
    text = str(item)
    parts = text.split(":")
    if len(parts) > 3 or not all(parts[: len(parts) - (len(parts) == 3)]):
        raise StackError(f"{text!r} is not a volume (SOURCE:TARGET[:MODE] or TARGET)", path=path)
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0]}
    source, target = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 else []
    for mode in modes:
        if mode not in _VOLUME_MODES:
            raise StackError(f"{text!r}: unknown volume mode {mode!r}", path=path)
    if not target.startswith("/"):
        raise StackError(f"{text!r}: the target {target!r} is not an absolute path", path=path)
    target = posixpath.normpath(target)  # `/data/` is `/data`, as Compose cleans it
    if _is_path(source):
        volume = {"type": "bind", "source": ctx.path(source), "target": target}
        volume["bind"] = {"create_host_path": True}
        propagation = [m for m in modes if m.endswith(("shared", "slave", "private"))]
        if propagation:
            volume["bind"]["propagation"] = propagation[0]
        if "z" in modes or "Z" in modes:
            volume["bind"]["selinux"] = "z" if "z" in modes else "Z"
    else:
        volume = {"type": "volume", "source": source, "target": target}
        if "nocopy" in modes:
            volume["volume"] = {"nocopy": True}
        else:
            volume["volume"] = {}
    if "ro" in modes:
        volume["read_only"] = True
    return volume


def _depends_on(value: Any) -> Doc:
    if isinstance(value, list):
        return {
            name: {"condition": "service_started", "required": True, "restart": False}
            for name in value
        }
    out: Doc = {}
    for name, spec in value.items():
        entry = dict(spec or {})
        entry.setdefault("condition", "service_started")
        entry.setdefault("required", True)
        entry.setdefault("restart", False)
        out[name] = entry
    return out


def _service_networks(value: Any) -> Doc:
    if not value:
        return {"default": None}
    if isinstance(value, list):
        return dict.fromkeys(value)
    return {name: (dict(spec) if spec else None) for name, spec in value.items()}


def _duration(value: Any, path: Path) -> str:
    try:
        return format_duration(parse_duration(value))
    except UnitError as exc:
        raise StackError(str(exc), path=path) from None


def _bytes(value: Any, path: Path) -> int:
    try:
        return parse_bytes(value)
    except UnitError as exc:
        raise StackError(str(exc), path=path) from None


def _float(value: Any, path: Path) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise StackError(f"{value!r} is not a number", path=path) from None


def _healthcheck(raw: Mapping[str, Any], path: Path) -> Doc:
    check: Doc = dict(raw)
    if check.pop("disable", False):
        return {"test": ["NONE"]}
    test = check.get("test")
    if isinstance(test, str):
        check["test"] = ["CMD-SHELL", test]
    elif isinstance(test, list) and test and test[0] not in ("CMD", "CMD-SHELL", "NONE"):
        raise StackError(
            f"the first item of test must be CMD, CMD-SHELL or NONE, not {test[0]!r}",
            path=(*path, "test"),
        )
    for key in ("interval", "timeout", "start_period", "start_interval"):
        if key in check:
            check[key] = _duration(check[key], (*path, key))
    return check


def _extra_hosts(value: Any, path: Path) -> list[str]:
    out: list[str] = []
    if isinstance(value, dict):
        for host, ips in value.items():
            for ip in ips if isinstance(ips, list) else [ips]:
                out.append(f"{host}={ip}")
        return out
    for item in value:
        text = str(item)
        if "=" in text:
            host, _, ip = text.partition("=")
        else:
            host, sep, ip = text.partition(":")
            if not sep:
                raise StackError(f"{text!r} is not HOST=IP", path=path)
        out.append(f"{host}={ip.removeprefix('[').removesuffix(']')}")
    return out


def _deploy(raw: Mapping[str, Any], path: Path) -> Doc:
    deploy: Doc = dict(raw)
    if "labels" in deploy:
        deploy["labels"] = _string_map(deploy["labels"], (*path, "labels"))
    resources = deploy.get("resources")
    if resources:
        deploy["resources"] = {
            kind: {
                key: (_bytes(v, (*path, "resources", kind, key)) if key == "memory" else v)
                for key, v in (spec or {}).items()
            }
            for kind, spec in resources.items()
        }
    for section in ("update_config", "rollback_config"):
        spec = deploy.get(section)
        if spec:
            spec = dict(spec)
            for key in ("delay", "monitor"):
                if key in spec:
                    spec[key] = _duration(spec[key], (*path, section, key))
            deploy[section] = spec
    policy = deploy.get("restart_policy")
    if policy:
        policy = dict(policy)
        for key in ("delay", "window"):
            if key in policy:
                policy[key] = _duration(policy[key], (*path, "restart_policy", key))
        deploy["restart_policy"] = policy
    return deploy


# -- top-level resources -----------------------------------------------------------------


def _resource(raw: Any, key: str, ctx: Context, path: Path) -> Doc:
    spec: Doc = dict(raw or {})
    external = spec.get("external")
    if isinstance(external, dict):  # the legacy `external: {name: x}`
        spec["external"] = True
        spec.setdefault("name", external.get("name", key))
    if spec.get("external"):
        spec.setdefault("name", key)
    else:
        spec.setdefault("name", f"{ctx.project}_{key}")
    if "file" in spec:
        spec["file"] = ctx.path(str(spec["file"]))
    if "labels" in spec:
        spec["labels"] = _string_map(spec["labels"], (*path, "labels"))
    if "driver_opts" in spec:
        spec["driver_opts"] = _string_map(spec["driver_opts"], (*path, "driver_opts"))
    return spec
