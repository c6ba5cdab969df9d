"""`orchestr runtime …`: a runc-compatible command line over `Runtime`.

Argument shapes follow runc's (urfave/cli): global options before the command,
command options before the positional arguments, `--flag value`, `--flag=value`
and single-letter aliases. A hand-written parser keeps start-up lean: argparse
alone costs more than runc's whole `start`.
"""

from __future__ import annotations

import os
import sys

from agent.runtime import fastjson
from agent.runtime.errors import RuntimeError_

TYPE_CHECKING = False  # typing costs ~10 ms of start-up; mypy still sees the block

if TYPE_CHECKING:
    from collections.abc import Callable

USAGE = """usage: orchestr runtime [--root DIR] [--debug] [--log FILE] [--log-format text|json]
                        COMMAND

An OCI runtime (runc-compatible command line).

commands:
  create [-b BUNDLE] [--pid-file F] [--console-socket S] ID   create a container
  start ID                                                   run its process
  run [-b BUNDLE] [-d] [--pid-file F] [--console-socket S] [--keep] ID
                                                             create, start, wait, delete
  state ID                                                   print its state as JSON
  kill [-a] ID [SIGNAL]                                      signal it (default TERM)
  delete [-f] ID                                             remove it
  exec [-p process.json] [-e K=V] [--cwd D] [-u UID[:GID]] [-t] [-d] [--pid-file F]
       [--console-socket S] [-c CAP] [--no-new-privs] ID [COMMAND ARGS...]
  pause ID / resume ID                                       freeze or thaw it
  ps [-f table|json] ID [PS-OPTIONS]                         its processes
  update [--memory N] [--cpu-shares N] [--cpu-quota N] [--cpu-period N]
         [--cpuset-cpus S] [--pids-limit N] [-r FILE] ID      change its limits
  list [-f table|json] [-q]                                  list containers
  spec [-b BUNDLE]                                           write a default config.json
"""


class UsageError(Exception):
    pass


# command -> {flag: (dest, takes_value)}
_FLAGS: dict[str, dict[str, tuple[str, bool]]] = {
    "create": {
        "--bundle": ("bundle", True),
        "-b": ("bundle", True),
        "--pid-file": ("pid_file", True),
        "--console-socket": ("console_socket", True),
        "--no-pivot": ("no_pivot", False),
        "--no-new-keyring": ("no_new_keyring", False),
        "--preserve-fds": ("preserve_fds", True),
    },
    "run": {
        "--bundle": ("bundle", True),
        "-b": ("bundle", True),
        "--pid-file": ("pid_file", True),
        "--console-socket": ("console_socket", True),
        "--detach": ("detach", False),
        "-d": ("detach", False),
        "--keep": ("keep", False),
        "--no-pivot": ("no_pivot", False),
        "--no-new-keyring": ("no_new_keyring", False),
        "--preserve-fds": ("preserve_fds", True),
    },
    "start": {},
    "state": {},
    "ps": {"--format": ("format", True), "-f": ("format", True)},
    "update": {
        "--resources": ("resources", True),
        "-r": ("resources", True),
        "--memory": ("memory", True),
        "--memory-swap": ("memory_swap", True),
        "--memory-reservation": ("memory_reservation", True),
        "--cpu-shares": ("cpu_shares", True),
        "--cpu-quota": ("cpu_quota", True),
        "--cpu-period": ("cpu_period", True),
        "--cpuset-cpus": ("cpuset_cpus", True),
        "--cpuset-mems": ("cpuset_mems", True),
        "--pids-limit": ("pids_limit", True),
    },
    "pause": {},
    "resume": {},
    "kill": {"--all": ("all", False), "-a": ("all", False)},
    "delete": {"--force": ("force", False), "-f": ("force", False)},
    "list": {
        "--format": ("format", True),
        "-f": ("format", True),
        "--quiet": ("quiet", False),
        "-q": ("quiet", False),
    },
    "spec": {"--bundle": ("bundle", True), "-b": ("bundle", True), "--rootless": ("r", False)},
    "exec": {
        "--process": ("process", True),
        "-p": ("process", True),
        "--env": ("env", True),
        "-e": ("env", True),
        "--cwd": ("cwd", True),
        "--user": ("user", True),
        "-u": ("user", True),
        "--additional-gids": ("gids", True),
        "-g": ("gids", True),
        "--tty": ("tty", False),
        "-t": ("tty", False),
        "--detach": ("detach", False),
        "-d": ("detach", False),
        "--pid-file": ("pid_file", True),
        "--console-socket": ("console_socket", True),
        "--cap": ("cap", True),
        "-c": ("cap", True),
        "--no-new-privs": ("no_new_privs", False),
        "--process-label": ("process_label", True),
        "--apparmor": ("apparmor", True),
        "--preserve-fds": ("preserve_fds", True),
        "--ignore-paused": ("ignore_paused", False),
    },
}
_GLOBAL = {
    "--root": ("root", True),
    "--debug": ("debug", False),
    "--log": ("log", True),
    "--log-format": ("log_format", True),
    "--systemd-cgroup": ("systemd_cgroup", False),
    "--rootless": ("rootless", True),
    "--criu": ("criu", True),
}
_MULTI = frozenset({"env", "cap", "gids"})


def parse(
    argv: list[str], flags: dict[str, tuple[str, bool]], stop_at_positional: bool = True
) -> tuple[dict[str, object], list[str]]:
    """(options, positionals); options are parsed until the first positional."""
    opts: dict[str, object] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i + 1 :])
            break
        if not arg.startswith("-") or arg == "-":
            if stop_at_positional:
                rest.extend(argv[i:])
                break
            rest.append(arg)
            i += 1
            continue
        name, eq, inline = arg.partition("=")
        if name not in flags and name.startswith("-") and not name.startswith("--"):
            name = "-" + name  # runc accepts -root as well as --root
            if name not in flags:
                name = arg.partition("=")[0]
        if name not in flags:
            raise UsageError(f"flag provided but not defined: {arg.partition('=')[0]}")
        dest, takes_value = flags[name]
        if takes_value:
            if eq:
                value = inline
            else:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: {name}")
                value = argv[i]
            if dest in _MULTI:
                existing = opts.setdefault(dest, [])
                assert isinstance(existing, list)
                existing.append(value)
            else:
                opts[dest] = value
        else:
            opts[dest] = not (eq and inline.lower() in ("false", "0"))
        i += 1
    return opts, rest


def _one_id(args: list[str], command: str) -> str:
    if len(args) != 1:
        raise UsageError(f'"{command}" requires exactly 1 argument (the container id)')
    return args[0]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"], ["help"]):
        print(USAGE, end="")
        return 0
    try:
        gopts, rest = parse(argv, _GLOBAL)
    except UsageError as e:
        print(f"orchestr runtime: {e}", file=sys.stderr)
        return 2
    debug = bool(gopts.get("debug"))
    log = Logger(gopts.get("log"), gopts.get("log_format"))
    if not rest or rest[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if rest else 2
    command, args = rest[0], rest[1:]
    if command not in _FLAGS:
        log.error(f"unknown command {command!r} (see orchestr runtime --help)")
        return 2
    if any(a in ("-h", "--help") for a in args[:1]):
        print(USAGE, end="")
        return 0
    try:
        opts, positional = parse(args, _FLAGS[command])
        root = str(gopts.get("root") or os.environ.get("ORCHESTR_RUNTIME_ROOT") or "")
        return COMMANDS[command](root, opts, positional, log)
    except UsageError as e:
        log.error(str(e))
        return 2
    except RuntimeError_ as e:
        log.error(str(e))
        if debug:
            raise
        return 1
    except OSError as e:
        log.error(describe_os_error(e))
        if debug:
            raise
        return 1
    except KeyboardInterrupt:
        return 130


def describe_os_error(e: OSError) -> str:
    """`/run/x: Permission denied (the runtime needs root)` rather than `[Errno 13] ...`."""
    if e.filename is None:
        return str(e.strerror or e)
    text = f"{e.filename}: {e.strerror}"
    if e.errno in (1, 13) and os.geteuid() != 0:  # EPERM, EACCES
        text += " (the runtime needs root)"
    return text


class Logger:
    """Errors on stderr as one line; also to --log (runc's text or json format),
    which is where containerd-style callers look for them."""

    def __init__(self, path: object, fmt: object) -> None:
        self.path = str(path) if path else None
        self.json = fmt == "json"

    def warn(self, message: str) -> None:
        self._emit("warning", message)

    def error(self, message: str) -> None:
        self._emit("error", message)

    def _emit(self, level: str, message: str) -> None:
        print(
            f"orchestr runtime: {level}: {message}"
            if level != "error"
            else f"orchestr runtime: {message}",
            file=sys.stderr,
        )
        if self.path:
            import time

            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            line = (
                fastjson.dumps({"level": level, "msg": message, "time": stamp})
                if self.json
                else f'time="{stamp}" level={level} msg="{message}"'
            )
            try:
                with open(self.path, "a") as f:
                    f.write(line + "\n")
            except OSError:
                pass


def _runtime(root: str, log: Logger):  # type: ignore[no-untyped-def]
    from agent.runtime.runtime import DEFAULT_ROOT, Runtime

    return Runtime(root or DEFAULT_ROOT, warn=log.warn)


def cmd_create(root: str, opts: dict[str, object], args: list[str], log: Logger) -> int:
    rt = _runtime(root, log)
    rt.create(
        _one_id(args, "create"),
        str(opts.get("bundle") or "."),
        pid_file=_opt_str(opts, "pid_file"),
        console_socket=_opt_str(opts, "console_socket"),
    )
    return 0


def cmd_run(root: str, opts: dict[str, object], args: list[str], log: Logger) -> int:
    rt = _runtime(root, log)
    result = rt.run(
        _one_id(args, "run"),
        str(opts.get("bundle") or "."),
        pid_file=_opt_str(opts, "pid_file"),
        console_socket=_opt_str(opts, "console_socket"),
        detach=bool(opts.get("detach")),
        keep=bool(opts.get("keep")),
    )
    if result.oom_killed:
        log.warn(f"container {args[0]}: killed by the OOM killer (memory limit reached)")
    return int(result.code)


def cmd_start(root: str, opts: dict[str, object], args: list[str], log: Logger) -> int:
    _runtime(root, log).start(_one_id(args, "start"))
    return 0


def cmd_state(root: str, opts: dict[str, object], args: list[str], log: Logger) -> int:
    state = _runtime(root, log).state(_one_id(args, "state"))
    print(fastjson.dumps(state, indent=2))
    return 0


def cmd_kill(root: str, opts: dict[str, object], args: list[str], log: Logger) -> int:
    from agent.runtime.runtime import parse_signal

    if len(args) not in (1, 2):
        raise UsageError('"kill" requires 1 or 2 arguments (ID [SIGNAL])')
    try:
        sig = parse_signal(args[1]) if len(args) == 2 else 15
    except ValueError as e:
        raise UsageError(str(e)) from None
    _runtime(root, log).kill(args[0], sig, all_processes=bool(opts.get("all")))
    return 0


def cmd_delete(root: str, opts: dict[str, object], args: list[str], log: Logger) -> int:
    from agent.runtime.errors import ContainerNotFound

    if not args:
        raise UsageError('"delete" requires at least 1 argument (the container id)')
    rt = _runtime(root, log)
    status = 0
    for cid in args:
        try:
            rt.delete(cid, force=bool(opts.get("force")))
        except ContainerNotFound as e:
            if not opts.get("force"):  # runc: delete -f of a missing container succeeds
                log.error(str(e))
                status = 1
    return status


def cmd_ps(root: str, opts: dict[str, object], args: list[str], log: Logger) -> int:
    """runc ps: the container's processes, as pids (json) or as `ps` shows them."""
    if not args:
        raise UsageError('"ps" requires at least 1 argument (ID [ps options])')
    pids = _runtime(root, log).processes(args[0])
    if str(opts.get("format") or "table") == "json":
        print(fastjson.dumps(pids))
        return 0
    import subprocess

    out = subprocess.run(["ps", *(args[1:] or ["-ef"])], capture_output=True, text=True)
    lines = out.stdout.splitlines()
    if not lines:
        raise UsageError(f"ps: {out.stderr.strip()}")
    header = lines[0].split()
    if "PID" not in header:
        raise UsageError("ps: its output has no PID column")
    column = header.index("PID")
    print(lines[0])
    wanted = {str(p) for p in pids}
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column] in wanted:
            print(line)
    return 0


def parse_bytes(text: str) -> int:
    """'512m', '1g', '1048576' -> bytes (docker's RAMInBytes units, binary)."""
    value = text.strip().lower().removesuffix("b")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    factor = 1
    if value and value[-1] in units:
        factor = units[value[-1]]
        value = value[:-1]
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"invalid size {text!r}: expected a number with k, m, g or t") from None
    if number < 0:
        return -1
    return int(number * factor)


def update_resources(opts: dict[str, object]) -> dict[str, object]:
    """linux.resources from `update`'s flags (or its --resources file)."""
    path = _opt_str(opts, "resources")
    if path:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path) as f:
                text = f.read()
        doc = fastjson.loads(text)
        if not isinstance(doc, dict):
            raise UsageError(f"{path}: not a JSON object")
        return doc
    resources: dict[str, dict[str, object]] = {}

    def put(group: str, key: str, value: object) -> None:
        resources.setdefault(group, {})[key] = value

    for flag, (group, key) in {
        "memory": ("memory", "limit"),
        "memory_swap": ("memory", "swap"),
        "memory_reservation": ("memory", "reservation"),
    }.items():
        if opts.get(flag):
            put(group, key, parse_bytes(str(opts[flag])))
    for flag, (group, key) in {
        "cpu_shares": ("cpu", "shares"),
        "cpu_quota": ("cpu", "quota"),
        "cpu_period": ("cpu", "period"),
        "pids_limit": ("pids", "limit"),
    }.items():
        if opts.get(flag):
            text = str(opts[flag])
            if not text.lstrip("-").isdigit():
                raise UsageError(f"--{flag.replace('_', '-')}: {text!r} is not a number")
            put(group, key, int(text))
    for flag, key in {"cpuset_cpus": "cpus", "cpuset_mems": "mems"}.items():
        if opts.get(flag):
            put("cpu", key, str(opts[flag]))
    if not resources:
        raise UsageError("update: nothing to change (give --memory, --cpu-shares, ... or -r)")
    return dict(resources)


def cmd_update(root: str, opts: dict[str, object], args: list[str], log: Logger) -> int:
    _runtime(root, log).update(_one_id(args, "update"), update_resources(opts))
    return 0


def cmd_pause(root: str, opts: dict[str, object], args: list[str], log: Logger) -> int:
    _runtime(root, log).pause(_one_id(args, "pause"))
    return 0


def cmd_resume(root: str, opts: dict[str, object], args: list[str], log: Logger) -> int:
    _runtime(root, log).resume(_one_id(args, "resume"))
    return 0


def cmd_list(root: str, opts: dict[str, object], args: list[str], log: Logger) -> int:
    containers = _runtime(root, log).list()
    fmt = str(opts.get("format") or "table")
    if opts.get("quiet"):
        for c in containers:
            print(c.id)
        return 0
    states = [c.state() for c in containers]
    if fmt == "json":
        print(fastjson.dumps(states))
        return 0
    if fmt != "table":
        raise UsageError(f"invalid format option {fmt!r}: use table or json")
    rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
    for s in states:
        rows.append(
            [
                str(s["id"]),
                str(s["pid"]),
                str(s["status"]),
                str(s["bundle"]),
                str(s["created"]),
                str(s["owner"] or "root"),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_spec(root: str, opts: dict[str, object], args: list[str], log: Logger) -> int:
    from agent.runtime.specopts import default_spec

    path = os.path.join(str(opts.get("bundle") or "."), "config.json")
    if os.path.exists(path):
        raise UsageError(f"File {path} exists. Remove it first")
    with open(path, "w") as f:
        f.write(fastjson.dumps(default_spec(), indent=2) + "\n")
    return 0


def cmd_exec(root: str, opts: dict[str, object], args: list[str], log: Logger) -> int:
    if not args:
        raise UsageError('"exec" requires at least 1 argument (ID [COMMAND ARGS...])')
    rt = _runtime(root, log)
    cid, command = args[0], args[1:]
    c = rt.load(cid)
    process = build_exec_process(c.config, opts, command)
    if opts.get("apparmor") or opts.get("process_label"):
        log.warn("--apparmor and --process-label are ignored: no LSM support")
    result = rt.exec(
        cid,
        process,
        detach=bool(opts.get("detach")),
        pid_file=_opt_str(opts, "pid_file"),
        console_socket=_opt_str(opts, "console_socket"),
    )
    return int(result.code)


def build_exec_process(
    config: dict[str, object], opts: dict[str, object], command: list[str]
) -> dict[str, object]:
    """The process for `exec`: --process FILE, else the container's process with
    the command and flags laid over it (as runc does)."""
    path = _opt_str(opts, "process")
    if path:
        with open(path) as f:
            doc = fastjson.loads(f.read())
        if not isinstance(doc, dict):
            raise UsageError(f"{path}: not a JSON object")
        return doc
    if not command:
        raise UsageError("exec: no command given (COMMAND or --process)")
    base = config.get("process")
    process: dict[str, object] = dict(base) if isinstance(base, dict) else {}
    process["args"] = command
    process["terminal"] = bool(opts.get("tty"))
    if opts.get("cwd"):
        process["cwd"] = opts["cwd"]
    env = process.get("env")
    process["env"] = [*(env if isinstance(env, list) else []), *_opt_list(opts, "env")]
    user_spec = _opt_str(opts, "user")
    current_user = process.get("user")
    user: dict[str, object] = dict(current_user) if isinstance(current_user, dict) else {}
    if user_spec:
        uid, _, gid = user_spec.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise UsageError(f"--user {user_spec!r}: expected UID[:GID] as numbers")
        user["uid"] = int(uid)
        user["gid"] = int(gid) if gid else 0
    gids = _opt_list(opts, "gids")
    if gids:
        user["additionalGids"] = [int(g) for g in gids for g in g.split(",") if g]
    process["user"] = user
    caps = _opt_list(opts, "cap")
    if caps:
        current = process.get("capabilities")
        merged = {k: list(v) for k, v in current.items()} if isinstance(current, dict) else {}
        for field in ("bounding", "effective", "permitted", "ambient"):
            merged[field] = [*merged.get(field, []), *caps]
        process["capabilities"] = merged
    if opts.get("no_new_privs"):
        process["noNewPrivileges"] = True
    return process


def _opt_str(opts: dict[str, object], key: str) -> str | None:
    v = opts.get(key)
    return str(v) if v else None


def _opt_list(opts: dict[str, object], key: str) -> list[str]:
    v = opts.get(key)
    return [str(x) for x in v] if isinstance(v, list) else []


COMMANDS: dict[str, Callable[[str, dict[str, object], list[str], Logger], int]] = {
    "create": cmd_create,
    "run": cmd_run,
    "start": cmd_start,
    "state": cmd_state,
    "kill": cmd_kill,
    "delete": cmd_delete,
    "ps": cmd_ps,
    "update": cmd_update,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "list": cmd_list,
    "spec": cmd_spec,
    "exec": cmd_exec,
}
