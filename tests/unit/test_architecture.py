"""The package boundaries of DESIGN.md, enforced.

- `agent` imports nothing of `orchestr` but `orchestr.api`;
- `orchestr` never imports `agent`, except in its entry points;
- `orchestr runtime` starts without the heavy modules (lean start-up path).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The composition roots: the only modules allowed to import both sides. The lean `run`
# path (cli/fast.py) is one: dispatched from __main__ before click, it shares the
# runtime's `_json`-only JSON codec (agent.runtime.fastjson) rather than copy it.
ENTRY_POINTS = {
    "orchestr/__main__.py",
    "orchestr/cli/app.py",
    "orchestr/cli/daemon.py",
    "orchestr/cli/fast.py",
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_agent_imports_only_orchestr_api() -> None:
    for path in (ROOT / "agent").rglob("*.py"):
        for name in imports_of(path):
            if name == "orchestr" or name.startswith("orchestr."):
                assert name.startswith("orchestr.api"), f"{path}: imports {name}"


def test_control_plane_never_imports_agent() -> None:
    for path in (ROOT / "orchestr").rglob("*.py"):
        rel = str(path.relative_to(ROOT))
        if rel in ENTRY_POINTS:
            continue
        for name in imports_of(path):
            assert not (name == "agent" or name.startswith("agent.")), f"{rel}: imports {name}"


HEAVY = {
    "re",
    "json",
    "typing",
    "enum",
    "dataclasses",
    "argparse",
    "click",
    "pydantic",
    "rich",
    "httpx",
    "yaml",
    "inspect",
    "signal",
    "platform",
}


def test_runtime_start_up_path_is_lean() -> None:
    code = (
        "import sys; from orchestr.__main__ import main; "
        "import agent.runtime.cli, agent.runtime.runtime, agent.runtime.spec, "
        "agent.runtime.schema, agent.runtime.linux.init, agent.runtime.terminal; "
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.split()
    assert not HEAVY & set(out), f"heavy modules on the runtime path: {HEAVY & set(out)}"


def test_json_errors_without_the_json_module() -> None:
    """The C scanner needs json.decoder for its errors; fastjson must cope without it."""
    code = (
        "from agent.runtime import fastjson\n"
        "try:\n    fastjson.loads('{\"a\": 1, ')\n"
        "except ValueError as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.strip()
    assert out.startswith("JSONDecodeError Expecting property name enclosed in double quotes")
    assert out.endswith("line 1 column 10 (char 9)")
