"""The `orchestr` entry point.

`orchestr runtime …` is dispatched before anything else is imported: it is the
runc-compatible runtime, started once per container operation, and must not
pay for click, rich or pydantic. `orchestr run …` is tried first on the lean
path of orchestr/cli/fast.py, which hands back what it does not do itself.
Every other command goes to the click app.
"""

from __future__ import annotations

import sys

_GLOBAL_WITH_VALUE = ("-H", "--host")


def _command_index(argv: list[str]) -> int:
    """Index of the first word after the global options."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_WITH_VALUE:
            i += 2
        elif (
            arg == "--debug" or arg.startswith("--host=") or (arg.startswith("-H") and arg != "-H")
        ):
            i += 1
        else:
            break
    return i


def _host_flag(argv: list[str]) -> str | None:
    """The value of the last -H/--host among the global options."""
    host = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_WITH_VALUE and i + 1 < len(argv):
            host = argv[i + 1]
            i += 1
        elif arg.startswith("--host="):
            host = arg[len("--host=") :]
        elif arg.startswith("-H") and arg != "-H":
            host = arg[2:]
        i += 1
    return host


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    i = _command_index(args)
    if i < len(args) and args[i] == "runtime":
        from agent.runtime.cli import main as runtime_main

        extra = ["--debug"] if "--debug" in args[:i] else []
        return runtime_main(extra + args[i + 1 :])
    if i < len(args) and args[i] == "run" and "--debug" not in args[:i]:
        from orchestr.cli.fast import run as fast_run

        code = fast_run(args[i + 1 :], _host_flag(args[:i]))
        if code is not None:
            return code
    if "site" not in sys.modules:  # started by the lean launcher (python -S)
        import site

        site.main()
    from orchestr.cli.app import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
