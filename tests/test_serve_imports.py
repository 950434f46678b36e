"""`runapi serve`'s process does not import what only other paths need (bench/RESULTS.md, "Memory"):
each of these is megabytes of every worker's resident set."""

from __future__ import annotations

import subprocess
import sys

LAZY = ("alembic", "mako", "aiohttp", "obstore", "jsonschema", "jinja2", "babel")


def test_the_serve_path_leaves_the_lazy_imports_out() -> None:
    code = ("import sys, runapi.cli.main, runapi.http.app; "
            f"print(' '.join(name for name in {LAZY!r} if name in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.split() == []
