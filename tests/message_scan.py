"""Find the messages a module can refuse with: the templates of `t(...)`, the literal messages
of GatewayError raises (and the literal rules of InvalidField, InvalidIdentifier and
MissingField), and the messages built another way (f-strings, concatenations), which no other
language can say. For tests/test_messages.py."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path

import gateway
from gateway.errors import GatewayError

# Where the message is among a refusal's positional arguments (default: the first).
MESSAGE_ARGS = {"InvalidField": 2, "InvalidIdentifier": 2, "MissingField": 1}


def error_classes() -> set[str]:
    """The GatewayError classes raised with a message as their first argument (those with an
    `__init__` of their own build it there: their `super().__init__` call is scanned)."""
    for m in pkgutil.walk_packages(gateway.__path__, "gateway."):
        if not m.name.endswith("__main__"):
            importlib.import_module(m.name)
    out: set[str] = set()
    todo = [GatewayError]
    while todo:
        c = todo.pop()
        own_init = any("__init__" in vars(k) for k in c.__mro__[:c.__mro__.index(GatewayError)])
        if not own_init or c.__name__ in MESSAGE_ARGS:
            out.add(c.__name__)
        todo += c.__subclasses__()
    return out


@dataclass
class Found:
    templates: dict[str, str] = field(default_factory=dict)  # template -> where
    built: list[str] = field(default_factory=list)  # where a message is an f-string or a sum


def scan(paths: list[Path], classes: set[str]) -> Found:
    found = Found()
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {
            n.targets[0].id: n.value.value for n in tree.body
            if isinstance(n, ast.Assign) and len(n.targets) == 1
            and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Constant)
            and isinstance(n.value.value, str)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.name}:{node.lineno}"
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else (
                fn.attr if isinstance(fn, ast.Attribute) else "")
            if name == "t" and node.args and isinstance(node.args[0], ast.Constant):
                found.templates.setdefault(node.args[0].value, where)
                continue
            is_super = (isinstance(fn, ast.Attribute) and fn.attr == "__init__"
                        and isinstance(fn.value, ast.Call)
                        and getattr(fn.value.func, "id", "") == "super")
            if name not in classes and not is_super:
                continue
            position = MESSAGE_ARGS.get(name, 0)
            if len(node.args) <= position:
                continue
            arg = node.args[position]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.templates.setdefault(arg.value, where)
            elif isinstance(arg, ast.Name) and arg.id in constants:
                found.templates.setdefault(constants[arg.id], where)
            elif isinstance(arg, ast.JoinedStr | ast.BinOp):
                found.built.append(where)
    return found
