"""Global CLI conventions: -H/--host, ORCHESTR_HOST, --debug, one-line errors."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from orchestr.__main__ import main
from orchestr.cli.app import DEFAULT_HOST, resolve_host


def test_host_precedence() -> None:
    assert resolve_host(None, {}) == DEFAULT_HOST
    assert resolve_host(None, {"ORCHESTR_HOST": "tcp://h:2376"}) == "tcp://h:2376"
    assert resolve_host("unix:///tmp/s", {"ORCHESTR_HOST": "tcp://h:2376"}) == "unix:///tmp/s"
    assert resolve_host("/tmp/s.sock", {}) == "unix:///tmp/s.sock"


def test_bad_host_is_refused() -> None:
    with pytest.raises(click.BadParameter, match="expected unix://"):
        resolve_host("ftp://x", {})


def test_version_shows_the_host(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ORCHESTR_HOST", "unix:///tmp/no-such-orchestr.sock")
    assert main(["version"]) == 1  # as `docker version`: no daemon, no success
    captured = capsys.readouterr()
    assert "host: unix:///tmp/no-such-orchestr.sock" in captured.out
    assert "cannot reach the orchestr daemon" in captured.err and "no such socket" in captured.err
    assert main(["-H", "tcp://n1:2376", "version"]) == 1
    captured = capsys.readouterr()
    assert "host: tcp://n1:2376" in captured.out and "TLS to a tcp:// daemon needs" in captured.err


def test_an_unbuilt_command_says_not_supported_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["swarm", "join", "--token", "x", "10.0.0.1:2377"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not supported yet" in err[0]


def test_a_stack_that_does_not_load_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stack = tmp_path / "stack.yml"
    stack.write_text("services:\n  web:\n    image: x\n    ports: [80:80:80]\n")
    assert main(["up", "-f", str(stack)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stack.yml:4:" in err[0] and "ports[0]" in err[0]
    assert main(["up", "-f", str(tmp_path / "missing.yml")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--debug", "up"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_runtime_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runtime", "--help"]) == 0
    assert "create" in capsys.readouterr().out


def test_up_is_compose_on_one_node_and_services_on_several() -> None:
    from orchestr.cli.compose import deploys_as_services

    assert not deploys_as_services({"Swarm": {"LocalNodeState": "active", "Nodes": 1}})
    assert not deploys_as_services({"Swarm": {"LocalNodeState": "inactive"}})
    assert deploys_as_services({"Swarm": {"LocalNodeState": "active", "Nodes": 3}})
