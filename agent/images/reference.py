"""Image references, parsed and normalised the way Docker does.

    [registry[:port]/][path/]name[:tag][@digest]

`parse` follows distribution/reference's "normalized named" rules
(ParseNormalizedNamed, then a default tag):

- no registry means Docker Hub: `busybox` is `docker.io/library/busybox:latest`,
  `me/app` is `docker.io/me/app:latest`; `index.docker.io` is `docker.io`;
- the first path component is a registry when it contains `.` or `:`, is
  `localhost`, or has an uppercase letter (`localhost:5000/x`, `Foo/bar`);
  a single component is never a registry (`localhost:5000` is the Docker Hub
  image `library/localhost` with tag `5000`, as in Docker);
- the repository path is lowercase components `[a-z0-9]+` joined by `.`, `_`,
  `__` or runs of `-`, separated by `/`, at most 255 characters in all;
- a tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; the digest must be one the
  content store can verify (`agent.content.Digest`);
- `name@digest` has no tag; `name:tag@digest` keeps both; a bare name gets
  `latest`;
- a bare 64-hex string is refused: it would be read as an image ID.

Errors are `ReferenceError_` (a `ValueError`) naming the input and the rule
broken, e.g. `"Busybox": repository name must be lowercase`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass

from agent.content import Digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
MAX_PATH_LENGTH = 255

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = re.compile(rf"{_HOST}(?::[0-9]+)?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")


class ReferenceError_(ValueError):
    """An image reference that breaks one of the rules above."""


@dataclass(frozen=True)
class Reference:
    """A normalised image reference; constructing one checks every part."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        problem = _problem(self.domain, self.path, self.tag, self.digest)
        if problem:
            raise ReferenceError_(f"{_quote(str(self))}: {problem}")

    @property
    def name(self) -> str:
        """`domain/path`: the repository, without tag or digest."""
        return f"{self.domain}/{self.path}"

    def familiar(self) -> str:
        """The short form Docker shows: `busybox:latest`, `myreg:5000/app:1`."""
        if self.domain != DEFAULT_DOMAIN:
            return self._join(self.name)
        path = self.path
        if path.startswith(OFFICIAL_PREFIX) and "/" not in path[len(OFFICIAL_PREFIX) :]:
            path = path[len(OFFICIAL_PREFIX) :]
        return self._join(path)

    def with_tag(self, tag: str) -> Reference:
        return dataclasses.replace(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        return dataclasses.replace(self, digest=digest)

    def __str__(self) -> str:
        return self._join(self.name)

    def _join(self, name: str) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return f"{name}{tag}{digest}"


def parse(text: str) -> Reference:
    """Parse and normalise `text`; raises `ReferenceError_` naming the rule broken."""

    def fail(problem: str) -> ReferenceError_:
        return ReferenceError_(f"{_quote(text)}: {problem}")

    if not text:
        raise fail("reference is empty")
    if _IDENTIFIER.fullmatch(text):
        raise fail("a 64-character hex string is an image ID, not a repository name")
    remainder, at, digest = text.partition("@")
    if at and not digest:
        raise fail("digest after '@' is empty")
    name, tag = _split_tag(remainder)
    if not name:
        raise fail("repository name is missing")
    domain, path = _split_domain(name)
    if tag is None and not digest:
        tag = DEFAULT_TAG
    problem = _problem(domain, path, tag, digest or None)
    if problem:
        raise fail(problem)
    return Reference(domain, path, tag, digest or None)


def _split_tag(name: str) -> tuple[str, str | None]:
    """`name:tag` -> (name, tag); a `:` before the last `/` is a registry port."""
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[:colon], name[colon + 1 :]
    return name, None


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_PREFIX + name
    if first == "localhost" or "." in first or ":" in first or first.lower() != first:
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return domain, path


def _problem(domain: str, path: str, tag: str | None, digest: str | None) -> str | None:
    """The first rule the parts break, or None."""
    if not _DOMAIN.fullmatch(domain):
        return f"invalid registry {domain!r} (host name, IPv4 or [IPv6], optional :port)"
    if path.lower() != path:
        return "repository name must be lowercase"
    for component in path.split("/"):
        if not component:
            return "repository name has an empty path component"
        if not _PATH_COMPONENT.fullmatch(component):
            return (
                f"invalid repository name component {component!r} "
                "(lowercase letters and digits, separated by '.', '_', '__' or '-')"
            )
    if len(path) > MAX_PATH_LENGTH:
        return f"repository name must not be more than {MAX_PATH_LENGTH} characters"
    if tag is not None and not _TAG.fullmatch(tag):
        if not tag:
            return "tag after ':' is empty"
        if len(tag) > 128:
            return "tag must not be more than 128 characters"
        return f"invalid tag {tag!r} (letters, digits, '_', '.', '-'; not starting with '.' or '-')"
    if digest is not None:
        try:
            Digest(digest)
        except ValueError as e:
            return str(e)
    return None


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
