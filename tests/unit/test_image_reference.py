"""Image references: Docker's normalisation rules, as a table.

The cases follow those of distribution/reference (reference_test.go and
normalize_test.go), restated as our own table: input, canonical form,
familiar form; and invalid inputs with the rule they break.
"""

from __future__ import annotations

import pytest

from agent.images.reference import Reference, ReferenceError_, parse

F64 = "f" * 64
SHA256 = "sha256:" + F64
DBCC = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
SHA512 = "sha512:" + "f" * 128
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
LONG_PATH = "a/" * 127 + "a"  # 255 characters: the longest allowed

VALID = [
    # (input, canonical, familiar)
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox:glibc", "docker.io/library/busybox:glibc", "busybox:glibc"),
    ("index.docker.io/me/app", "docker.io/me/app:latest", "me/app:latest"),
    ("me/app", "docker.io/me/app:latest", "me/app:latest"),
    ("other/library", "docker.io/other/library:latest", "other/library:latest"),
    # library/ is only dropped for single-component official names
    ("library/foo/bar", "docker.io/library/foo/bar:latest", "library/foo/bar:latest"),
    ("test_com/foo", "docker.io/test_com/foo:latest", "test_com/foo:latest"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
    ("myreg:5000/app:1", "myreg:5000/app:1", "myreg:5000/app:1"),
    ("test-com:8080/foo", "test-com:8080/foo:latest", "test-com:8080/foo:latest"),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage:xn--n3h.com", None),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", None, None),
    ("b.gcr.io/test.example.com/my-app:test.example.com", None, None),
    ("192.168.1.1:5000/repo:5050", None, None),
    ("192.168.1.1/repo", "192.168.1.1/repo:latest", None),
    # one component is never a registry: these are Docker Hub names with tags
    ("192.168.0.1", "docker.io/library/192.168.0.1:latest", "192.168.0.1:latest"),
    ("test.com:5000", "docker.io/library/test.com:5000", "test.com:5000"),
    ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
    ("foo_bar.com:8080", "docker.io/library/foo_bar.com:8080", "foo_bar.com:8080"),
    ("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080", "foo/foo_bar.com:8080"),
    ("lowercase:Uppercase", "docker.io/library/lowercase:Uppercase", "lowercase:Uppercase"),
    # an uppercase first component can only be a registry
    ("Docker/docker", "Docker/docker:latest", "Docker/docker:latest"),
    ("[2001:db8::1]/repo", "[2001:db8::1]/repo:latest", None),
    ("[::1]:5000/repo", "[::1]:5000/repo:latest", None),
    ("[2001:db8::1]:5000/repo:tag@" + SHA256, None, None),
    ("dock__er/docker", "docker.io/dock__er/docker:latest", None),
    ("docker---rules/docker", "docker.io/docker---rules/docker:latest", None),
    ("d/docker", "docker.io/d/docker:latest", None),
    ("jess/t", "docker.io/jess/t:latest", None),
    ("ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base:latest", None),
    # digest without tag stays untagged; tag and digest together keep both
    ("redis@" + DBCC, "docker.io/library/redis@" + DBCC, "redis@" + DBCC),
    ("busybox:latest@" + DBCC, "docker.io/library/busybox:latest@" + DBCC, None),
    ("test:5000/repo@" + SHA256, "test:5000/repo@" + SHA256, None),
    ("xn--7o8h.com/myimage:xn--7o8h.com@" + SHA512, None, None),
    # 64 characters are fine unless they are all hex; with a registry, even then
    ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", None, None),
    ("docker.io/" + HEX64, "docker.io/library/" + HEX64 + ":latest", None),
    (HEX64[:63], "docker.io/library/" + HEX64[:63] + ":latest", None),
    (LONG_PATH + ":a-long-tag", "docker.io/" + LONG_PATH + ":a-long-tag", None),
    ("busybox:" + "t" * 128, None, None),
]


@pytest.mark.parametrize(("text", "canonical", "familiar"), VALID)
def test_valid(text: str, canonical: str | None, familiar: str | None) -> None:
    ref = parse(text)
    if canonical is not None:
        assert str(ref) == canonical
    if familiar is not None:
        assert ref.familiar() == familiar
    # both forms parse back to the same reference
    assert parse(str(ref)) == ref
    assert parse(ref.familiar()) == ref
    assert ref.name == f"{ref.domain}/{ref.path}"


INVALID = [
    # (input, part of the message)
    ("", "reference is empty"),
    ("Busybox", "repository name must be lowercase"),
    ("Uppercase:tag", "must be lowercase"),
    ("docker/Docker", "must be lowercase"),
    ("docker.io/docker/Docker", "must be lowercase"),
    ("test:5000/Uppercase/lowercase:tag", "must be lowercase"),
    (HEX64, "image ID"),
    ("https://github.com/docker/docker", "invalid registry 'https:'"),
    ("-docker.io/docker/docker", "invalid registry"),
    ("fc00::1:5000/debian", "invalid registry"),
    ("[fe80::1%eth0]:5000/repo", "invalid registry"),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", "invalid registry"),
    ("[2001:db8::1]:5000", "invalid repository name component"),
    ("-docker", "invalid repository name component '-docker'"),
    ("docker-/docker", "component 'docker-'"),
    ("____/____", "component '____'"),
    ("_docker/_docker", "component '_docker'"),
    # a '.' makes the first component a registry, which these are not
    ("dock..er/docker", "invalid registry 'dock..er'"),
    ("dock_.er/docker", "invalid registry"),
    ("dock-.er/docker", "invalid registry"),
    ("docker/dock..er", "component 'dock..er'"),
    ("docker/dock_.er", "component 'dock_.er'"),
    ("aa/asdf$$^/aa", "component 'asdf$$^'"),
    ("busybox latest", "component"),
    ("docker///docker", "empty path component"),
    ("docker/", "empty path component"),
    ("a/" * 128 + "a:tag", "not be more than 255 characters"),
    ("x" * 30 + "_" * 3 + "/docker", "component"),
    ("this_is_a_namespace_" * 13 + "x/docker", "not be more than 255 characters"),
    (":justtag", "repository name is missing"),
    ("@" + SHA256, "repository name is missing"),
    ("busybox:", "tag after ':' is empty"),
    ("busybox:-foo", "invalid tag '-foo'"),
    ("busybox:.foo", "invalid tag"),
    ("busybox:" + "t" * 129, "tag must not be more than 128 characters"),
    ("busybox@", "digest after '@' is empty"),
    ("repo@sha256:" + "f" * 34, "sha256 needs 64 hex characters, got 34"),
    ("validname@invaliddigest:" + F64, "unsupported algorithm 'invaliddigest'"),
    ("repo@sha256:" + "F" * 64, "lowercase hex"),
    ("repo@" + F64, "missing the '<algorithm>:' prefix"),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(ReferenceError_) as exc:
        parse(text)
    assert message in str(exc.value)


def test_error_names_input_and_rule() -> None:
    with pytest.raises(ValueError) as exc:
        parse("Busybox")
    assert str(exc.value) == '"Busybox": repository name must be lowercase'


def test_parts() -> None:
    ref = parse("myreg:5000/team/app:1@" + DBCC)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("myreg:5000", "team/app", "1", DBCC)
    assert ref.name == "myreg:5000/team/app"
    untagged = parse("redis@" + DBCC)
    assert untagged.tag is None
    assert untagged.digest == DBCC


def test_construction_is_validated() -> None:
    ref = Reference("docker.io", "library/busybox", "latest")
    assert ref == parse("busybox")
    with pytest.raises(ReferenceError_, match="must be lowercase"):
        Reference("docker.io", "library/Busybox")
    with pytest.raises(ReferenceError_, match="invalid tag"):
        ref.with_tag("-x")
    assert ref.with_digest(DBCC).familiar() == "busybox:latest@" + DBCC
