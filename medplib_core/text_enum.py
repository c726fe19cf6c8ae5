"""`TextEnum`: a string enum whose members print and format as their values on every Python.

Members equal their values (``Kind.BOX == "box"``), serialise to JSON as them, and
``f"{Kind.BOX}"`` is ``"box"`` (Python 3.11's plain ``str, Enum`` would give ``"Kind.BOX"``).
"""

from __future__ import annotations

from enum import Enum


class TextEnum(str, Enum):
    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
