"""A TCP listener only with mutual TLS, on loopback: the docker CLI and orchestr's CLI
with client certificates get in; a client without one does not; a TCP host without
TLS options is refused at start."""

from __future__ import annotations

import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MARKER, Daemon, _stop_supervisor, _unmount_under, run_id
from tests.integration.test_runtime import ORCHESTR

OPENSSL = "openssl"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as docker's
    documentation makes them."""
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        cwd=d,
    )
    (d / "server.ext").write_text("subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage = clientAuth\n")
    for who in ("server", "client"):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={who}",
            "-keyout",
            f"{who}-key.pem",
            "-out",
            f"{who}.csr",
            cwd=d,
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{who}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            f"{who}.ext",
            "-out",
            f"{who}.pem",
            cwd=d,
        )
    client_dir = d / "client"
    client_dir.mkdir()
    (client_dir / "ca.pem").write_bytes((d / "ca.pem").read_bytes())
    (client_dir / "cert.pem").write_bytes((d / "client.pem").read_bytes())
    (client_dir / "key.pem").write_bytes((d / "client-key.pem").read_bytes())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tls_daemon(state_dir: Path) -> Iterator[tuple[Daemon, int, Path]]:
    certs = state_dir / "certs"
    certs.mkdir()
    make_certs(certs)
    port = free_port()
    sock_dir = Path(tempfile.mkdtemp(prefix=f"{MARKER}-", dir="/tmp"))
    sock = sock_dir / "d.sock"
    exec_root = sock_dir / "exec"  # short: the TLS proxy's socket lives in it
    log = (state_dir / "daemon.log").open("ab")
    proc = subprocess.Popen(
        [
            ORCHESTR,
            "daemon",
            "--data-root",
            str(state_dir / "data"),
            "--exec-root",
            str(exec_root),
            "--host",
            f"unix://{sock}",
            "--host",
            f"tcp://127.0.0.1:{port}",
            "--cgroup-parent",
            f"/t-{run_id()}-tls",
            "--tlsverify",
            "--tlscacert",
            str(certs / "ca.pem"),
            "--tlscert",
            str(certs / "server.pem"),
            "--tlskey",
            str(certs / "server-key.pem"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, (state_dir / "daemon.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.05)
        yield Daemon(state_dir, proc, sock), port, certs
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        _stop_supervisor(state_dir, exec_root)
        _unmount_under(state_dir)
        subprocess.run(["rm", "-rf", str(sock_dir)], check=False)


def test_clients_with_certificates_get_in(
    tls_daemon: tuple[Daemon, int, Path], busybox_rootfs: Path
) -> None:
    d, port, certs = tls_daemon
    env = d.env()
    docker = [
        "docker",
        "--tlsverify",
        "--tlscacert",
        str(certs / "ca.pem"),
        "--tlscert",
        str(certs / "client.pem"),
        "--tlskey",
        str(certs / "client-key.pem"),
        "-H",
        f"tcp://127.0.0.1:{port}",
    ]
    env.pop("DOCKER_HOST")
    version = subprocess.run(
        [*docker, "version", "--format", "{{.Server.APIVersion}}"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert version.returncode == 0 and version.stdout.strip() == "1.41", version.stderr
    tar = d.state_dir / "bb.tar"
    subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(tar), "."], check=True)
    subprocess.run(
        [*docker, "import", str(tar), "busybox"], env=env, check=True, capture_output=True
    )
    echoed = subprocess.run(
        [*docker, "run", "--rm", "busybox", "echo", "over tls"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert echoed.stdout == "over tls\n", echoed.stderr
    # stdin, then the client's half-close (a TLS close_notify), and the answer still comes
    piped = subprocess.run(
        [*docker, "run", "-i", "--rm", "busybox", "cat"],
        input="fed\n",
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert piped.stdout == "fed\n", piped.stderr

    orchestr_env = {**env, "ORCHESTR_CERT_PATH": str(certs / "client")}
    listing = subprocess.run(
        [ORCHESTR, "-H", f"tcp://127.0.0.1:{port}", "image", "ls", "--format", "json"],
        capture_output=True,
        text=True,
        env=orchestr_env,
        check=False,
    )
    assert listing.returncode == 0 and "busybox:latest" in listing.stdout, listing.stderr


def test_a_client_without_a_certificate_is_refused(tls_daemon: tuple[Daemon, int, Path]) -> None:
    _, port, certs = tls_daemon
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)),
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        if not tls.recv(1024):  # TLS 1.3 reports the refusal on the first read
            raise ConnectionResetError("closed")


def test_tcp_without_tls_is_refused(state_dir: Path) -> None:
    out = subprocess.run(
        [
            ORCHESTR,
            "daemon",
            "--data-root",
            str(state_dir / "data"),
            "--exec-root",
            str(Path(tempfile.gettempdir()) / f"{MARKER}-never-made"),
            "--host",
            "tcp://127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1 and "needs mutual TLS" in out.stderr
    _stop_supervisor(state_dir)
