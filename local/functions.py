"""Load function handlers from functions/<name>/handler.py the way the runtime does: once per process."""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"
_loaded: dict[str, Callable[[Any, Any], Any]] = {}
_lock = threading.Lock()


def names() -> list[str]:
    return sorted(p.parent.name for p in FUNCTIONS_DIR.glob("*/handler.py"))


def load(name: str) -> Callable[[Any, Any], Any]:
    """The `handler` callable of functions/<name>/handler.py."""
    with _lock:
        if name not in _loaded:
            path = FUNCTIONS_DIR / name / "handler.py"
            if not path.is_file():
                raise KeyError(f"no function {name!r} (expected {path})")
            if str(ROOT) not in sys.path:
                sys.path.insert(0, str(ROOT))
            # named by its path (not entered in sys.modules), as mutmut names the module it mutates
            spec = importlib.util.spec_from_file_location(f"functions.{name}.handler", path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _loaded[name] = module.handler
        return _loaded[name]
