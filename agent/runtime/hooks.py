"""OCI hooks: programs the runtime runs at points of the lifecycle.

Each hook gets the container's state as JSON on its stdin; `timeout` (seconds)
bounds it. Where they run (config.md, "POSIX-platform Hooks"):

    prestart, createRuntime   by the caller of create, after the namespaces and
                              mounts exist, before pivot_root
    createContainer           by the container's init, in its namespaces,
                              before pivot_root
    startContainer            by the container's init after `start`, before exec
                              (the path is resolved inside the container)
    poststart                 by `start`, once the process was told to run
    poststop                  by `delete`, once the container is gone

A failing hook of the first four stops the container; a failing poststart or
poststop hook is a warning. Uses fork/exec directly: the init cannot import
`subprocess` after pivot_root, and it costs start-up time besides.
"""

from __future__ import annotations

import os
import time

from agent.runtime import fastjson

BEFORE_PIVOT = ("prestart", "createRuntime")  # run by the caller of create
# Any of these makes the init stop before pivot_root and ask the caller.
IN_CONTAINER_OR_BEFORE = ("prestart", "createRuntime", "createContainer", "startContainer")


class HookError(Exception):
    pass


def hooks_of(config: dict[str, object], kind: str) -> list[dict[str, object]]:
    hooks = config.get("hooks")
    entries = hooks.get(kind) if isinstance(hooks, dict) else None
    return [h for h in entries if isinstance(h, dict)] if isinstance(entries, list) else []


def state_json(
    container_id: str,
    status: str,
    pid: int,
    bundle: str,
    annotations: dict[str, str],
    oci_version: str,
) -> bytes:
    state: dict[str, object] = {
        "ociVersion": oci_version,
        "id": container_id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
    }
    if annotations:
        state["annotations"] = annotations
    return fastjson.dumps(state).encode()


def run_all(config: dict[str, object], kind: str, state: bytes) -> None:
    """Run every hook of `kind` in order; the first failure raises HookError."""
    for i, hook in enumerate(hooks_of(config, kind)):
        run_hook(hook, state, f"hooks.{kind}[{i}]")


def run_hook(hook: dict[str, object], state: bytes, where: str) -> None:
    path = str(hook.get("path") or "")
    raw_args = hook.get("args")
    args = [str(a) for a in raw_args] if isinstance(raw_args, list) and raw_args else [path]
    raw_env = hook.get("env")
    env: dict[str, str] = {}
    for item in raw_env if isinstance(raw_env, list) else []:
        key, sep, value = str(item).partition("=")
        if sep:
            env[key] = value
    timeout = hook.get("timeout")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(r, 0)
            os.close(r)
            os.close(w)
            os.execve(path, args, env)
        except OSError as e:
            os.write(2, f"{where}: {path}: {e.strerror}\n".encode())
        os._exit(127)
    os.close(r)
    try:
        os.write(w, state)
    except BrokenPipeError:
        pass  # the hook need not read its stdin
    finally:
        os.close(w)
    status = _wait(pid, float(timeout) if isinstance(timeout, int) and timeout > 0 else None)
    if status is None:
        raise HookError(f"{where}: {path} timed out after {timeout}s (killed)")
    if os.WIFSIGNALED(status):
        raise HookError(f"{where}: {path} was killed by signal {os.WTERMSIG(status)}")
    code = os.WEXITSTATUS(status)
    if code != 0:
        raise HookError(f"{where}: {path} exited with status {code}")


def _wait(pid: int, timeout: float | None) -> int | None:
    """The hook's wait status, or None after killing it at the timeout."""
    if timeout is None:
        while True:
            try:
                return os.waitpid(pid, 0)[1]
            except InterruptedError:
                continue
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
