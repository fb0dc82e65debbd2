"""Reading terraform/*.tf with python-hcl2 into plain dicts: resources with their arguments and blocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
META_ARGUMENTS = {"count", "for_each", "depends_on", "provider", "lifecycle"}


def _key(name: str) -> str:
    return name.strip('"')


@dataclass
class Block:
    arguments: dict[str, Any] = field(default_factory=dict)
    blocks: dict[str, list[Block]] = field(default_factory=dict)


def to_block(raw: dict[str, Any]) -> Block:
    block = Block()
    for name, value in raw.items():
        if name in ("__is_block__", "__comments__", "__inline_comments__"):
            continue
        if name == "dynamic":  # dynamic "x" { content { ... } } counts as block x
            for entry in value:
                for label, body in entry.items():
                    contents = body.get("content", [])
                    block.blocks.setdefault(_key(label), []).extend(to_block(c) for c in contents)
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) and v.get("__is_block__") for v in value):
            block.blocks.setdefault(_key(name), []).extend(to_block(v) for v in value)
        else:
            block.arguments[_key(name)] = value
    return block


@dataclass
class Resource:
    type: str
    name: str
    file: str
    body: Block


def load_all() -> dict[str, dict[str, Any]]:
    return {path.name: hcl2.load(path.open(encoding="utf-8")) for path in sorted(TERRAFORM.glob("*.tf"))}


def resources() -> list[Resource]:
    found = []
    for file, parsed in load_all().items():
        for entry in parsed.get("resource", []):
            for rtype, named in entry.items():
                for rname, body in named.items():
                    found.append(Resource(_key(rtype), _key(rname), file, to_block(body)))
    return found


def _named(kind: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for parsed in load_all().values():
        for entry in parsed.get(kind, []):
            for name, body in entry.items():
                out[_key(name)] = body
    return out


def variables() -> dict[str, dict[str, Any]]:
    return _named("variable")


def outputs() -> dict[str, dict[str, Any]]:
    return _named("output")


def text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in sorted(TERRAFORM.glob("*.tf")))


def plain(value: Any) -> Any:
    """A parsed value with python-hcl2's quoting removed from strings and map keys."""
    if isinstance(value, dict):
        return {_key(k): plain(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def locals_() -> dict[str, Any]:
    """Every `locals` entry of terraform/*.tf, as parsed (expressions stay text)."""
    found: dict[str, Any] = {}
    for parsed in load_all().values():
        for entry in parsed.get("locals", []):
            found.update({k: v for k, v in entry.items() if k != "__is_block__"})
    return found


def resolve(value: Any) -> Any:
    """`plain(value)`, with every bare `${var.NAME}` replaced by that variable's default."""
    value = plain(value)
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v) for v in value]
    if isinstance(value, str) and value.startswith("${var.") and value.endswith("}") and value.count("${") == 1:
        name = value[len("${var."):-1]
        if name.isidentifier():
            return plain(variables()[name]["default"])
    return value
