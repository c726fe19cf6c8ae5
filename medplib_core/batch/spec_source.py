"""Reading a batch spec file safely, remembering where each value was written.

The file must be UTF-8 and at most MEDPLIB_MAX_SPEC_BYTES; YAML is composed first and its
size *after* alias expansion checked against MEDPLIB_MAX_SPEC_NODES before any Python object is
built (a few hundred bytes of nested aliases can otherwise expand to billions of values);
recursive aliases are refused. `Located` maps a key path such as ``("cases", 2, "path")`` to
the line it came from, so every complaint can name the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import MedplibError
from ..limits import human_bytes, limit


class SpecError(MedplibError):
    """The batch specification is unusable; the message names the file and the problem."""


class Located:
    """Lines of the values in a parsed spec (YAML), or none (JSON, dicts)."""

    def __init__(self, source: str, lines: dict[tuple, int] | None = None):
        self.source = source
        self.lines = lines or {}

    def where(self, keys: tuple) -> str:
        """``spec.yaml: line 7 (cases[2].path)`` or ``spec.json: cases[2].path``."""
        name = key_path(keys)
        for n in range(len(keys), 0, -1):
            line = self.lines.get(tuple(keys[:n]))
            if line is not None:
                return f"{self.source}: line {line}" + (f" ({name})" if name else "")
        return f"{self.source}: {name}" if name else self.source

    def error(self, keys: tuple, problem: str) -> SpecError:
        return SpecError(f"{self.where(keys)}: {problem}")


def key_path(keys: tuple) -> str:
    out = ""
    for k in keys:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out


def read_text(path: Path, what: str = "batch spec") -> str:
    """The file as UTF-8 text; SpecError for unreadable, oversized or non-UTF-8 files."""
    cap = limit("MEDPLIB_MAX_SPEC_BYTES")
    try:
        with open(path, "rb") as fh:
            data = fh.read(cap + 1)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from exc
    if len(data) > cap:
        raise SpecError(f"{path}: the {what} is larger than {human_bytes(cap)}; set "
                        "MEDPLIB_MAX_SPEC_BYTES to raise the limit")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(f"{path}: line {line}: the {what} is not UTF-8 text (byte "
                        f"0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8") \
            from None


def parse(path: Path, text: str) -> tuple[Any, Located]:
    """The spec's data and where each value was written."""
    source = str(path)
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text), Located(source)
        except ValueError as exc:
            raise SpecError(f"{path}: not valid JSON ({exc})") from exc
        except RecursionError:
            raise SpecError(f"{path}: not valid JSON (nested too deeply)") from None
    return _parse_yaml(path, text)


def _parse_yaml(path: Path, text: str) -> tuple[Any, Located]:
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, Located(str(path))
        lines: dict[tuple, int] = {}
        _measure(node, (), lines, {}, set(), limit("MEDPLIB_MAX_SPEC_NODES"), path)
        return loader.construct_document(node), Located(str(path), lines)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}: {where}not valid YAML ({problem})") from None
    except RecursionError:
        raise SpecError(f"{path}: not valid YAML (nested too deeply)") from None
    finally:
        loader.dispose()


def _measure(node, keys: tuple, lines: dict, sizes: dict, active: set, cap: int,
             path: Path) -> int:
    """Values under ``node`` once aliases are expanded (SpecError past ``cap``); records the
    line of every value reached by its first path."""
    import yaml

    if keys not in lines:
        lines[keys] = node.start_mark.line + 1
    key = id(node)
    if key in sizes:  # an alias of a value already measured
        return sizes[key]
    if key in active:
        raise SpecError(f"{path}: line {node.start_mark.line + 1}: a recursive alias (a value "
                        "that contains itself) is not allowed in a batch spec")
    active.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for m, item in enumerate(node.value):
            total += _measure(item, keys + (m,), lines, sizes, active, cap, path)
            _check(total, cap, path, node)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else str(len(keys))
            total += _measure(k, keys + ("<key>",), {}, sizes, active, cap, path)
            total += _measure(v, keys + (name,), lines, sizes, active, cap, path)
            _check(total, cap, path, node)
    active.discard(key)
    sizes[key] = total
    return total


def _check(total: int, cap: int, path: Path, node) -> None:
    if total > cap:
        raise SpecError(f"{path}: line {node.start_mark.line + 1}: the spec expands to more "
                        f"than {cap} values (YAML aliases?); set MEDPLIB_MAX_SPEC_NODES to "
                        "raise the limit")
