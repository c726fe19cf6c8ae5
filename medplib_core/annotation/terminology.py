"""Coded terminology for labels: segmentation property category + type (+ modifier).

Codes come from the DICOM content mapping resources that pydicom ships (CID 7150 for the
categories; CID 7192 anatomical structures, 7191 tissues, 7194 morphologically abnormal
structures, 7193 physical objects for the types), SNOMED CT for laterality. A label keeps its
codes as a plain JSON dict (`Label.terminology`) so label files and projects stay readable
without pydicom; `Term` converts to highdicom's `CodedConcept` for DICOM SEG and RTSTRUCT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

# (category keyword in CID 7150, CID of its types)
_TYPE_LISTS = (("AnatomicalStructure", 7192), ("Tissue", 7191),
               ("MorphologicallyAbnormalStructure", 7194), ("PhysicalObject", 7193))
# The usual organs and findings, shown first in an empty search (by code meaning).
COMMON = ("Liver", "Spleen", "Kidney", "Pancreas", "Gallbladder", "Stomach", "Lung", "Heart",
          "Brain", "Aorta", "Bladder", "Prostate", "Bone", "Mass", "Nodule", "Lesion", "Cyst",
          "Neoplasm", "Edema", "Hemorrhage", "Necrosis")
LATERALITY = {"left": codes.SCT.Left, "right": codes.SCT.Right}
_SYNONYMS = {"bowel": "intestine", "vertebrae": "vertebra", "tumor": "neoplasm",
             "tumour": "neoplasm", "metastasis": "secondary", "kidneys": "kidney",
             "lungs": "lung", "ribs": "rib", "cartilages": "cartilage"}
_LESION_WORDS = ("lesion", "tumor", "tumour", "nodule", "mass", "cyst", "polyp", "metasta")


def code_to_dict(code: Code) -> dict[str, str]:
    return {"value": str(code.value), "scheme": str(code.scheme_designator), "meaning": str(code.meaning)}


def code_from_dict(d: dict[str, Any]) -> Code:
    try:
        return Code(str(d["value"]), str(d["scheme"]), str(d["meaning"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"a code needs value, scheme and meaning, got {d!r}") from exc


@dataclass(frozen=True)
class Term:
    """A segmentation property category and type, with an optional type modifier (laterality)."""

    category: Code
    type: Code
    modifier: Code | None = None

    @property
    def display(self) -> str:
        side = f" ({self.modifier.meaning})" if self.modifier is not None else ""
        return f"{self.category.meaning} / {self.type.meaning}{side}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"category": code_to_dict(self.category), "type": code_to_dict(self.type)}
        if self.modifier is not None:
            d["modifier"] = code_to_dict(self.modifier)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Term":
        mod = d.get("modifier")
        return cls(code_from_dict(d["category"]), code_from_dict(d["type"]),
                   code_from_dict(mod) if mod else None)

    def with_modifier(self, modifier: Code | None) -> "Term":
        return Term(self.category, self.type, modifier)

    def coded_concepts(self):
        """``(category, type, modifier or None)`` as highdicom `CodedConcept`s."""
        from highdicom.sr import CodedConcept

        cc = lambda c: CodedConcept(c.value, c.scheme_designator, c.meaning)  # noqa: E731
        return cc(self.category), cc(self.type), cc(self.modifier) if self.modifier else None


@lru_cache(maxsize=1)
def catalogue() -> tuple[Term, ...]:
    """Every (category, type) pair of the type lists, the usual organs and findings first."""
    terms = []
    seen = set()
    for cat_kw, cid in _TYPE_LISTS:
        category = getattr(codes.cid7150, cat_kw)
        collection = getattr(codes, f"cid{cid}")
        for kw in collection.dir():
            code = getattr(collection, kw)
            key = (category.value, code.scheme_designator, code.value)
            if key not in seen:
                seen.add(key)
                terms.append(Term(category, code))
    rank = {m.lower(): n for n, m in enumerate(COMMON)}
    first = sorted((t for t in terms if t.type.meaning.lower() in rank and
                    (t.category.value != "85756007" or t.type.meaning == "Bone")),
                   key=lambda t: rank[t.type.meaning.lower()])
    rest = sorted((t for t in terms if t not in first), key=lambda t: t.type.meaning.lower())
    return tuple(first + rest)


def _tokens(text: str) -> list[str]:
    words = [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]
    return [_SYNONYMS.get(w, w) for w in words]


@lru_cache(maxsize=1)
def _type_tokens() -> tuple[list[str], ...]:
    """The words of every catalogue term's type, in catalogue order."""
    return tuple(_tokens(t.type.meaning) for t in catalogue())


def search(query: str, limit: int = 50) -> list[Term]:
    """Terms whose type (or category) matches every word of ``query``; best matches first.

    An empty query gives the usual organs and findings first, then everything else.
    """
    words = _tokens(query)
    if not words:
        return list(catalogue()[:limit])
    scored = []
    for n, t in enumerate(catalogue()):
        type_words = _tokens(t.type.meaning)
        haystack = type_words + _tokens(t.category.meaning)
        if not all(any(h.startswith(w) for h in haystack) for w in words):
            continue
        exact = t.type.meaning.lower() == query.strip().lower()
        prefix = t.type.meaning.lower().startswith(query.strip().lower())
        scored.append((not exact, not prefix, len(type_words), n, t))
    scored.sort(key=lambda s: s[:4])
    return [s[-1] for s in scored[:limit]]


def suggest(name: str) -> Term | None:
    """A term for a label name such as ``"kidney_right"`` or ``"vertebrae_T12"``, or None.

    Every word of the name (bare numbers and the side aside) must be a word of the term's
    type; among those, the type with the fewest other words wins. Left/right become the
    laterality modifier.
    """
    words = _tokens(name)
    side = next((LATERALITY[w] for w in words if w in LATERALITY), None)
    words = [w for w in words if w not in LATERALITY and not w.isdigit()]
    if not words:
        return None
    best = None
    for n, (t, type_words) in enumerate(zip(catalogue(), _type_tokens())):
        if all(w in type_words for w in words):
            key = (len(type_words) - len(words), n)
            if best is None or key < best[0]:
                best = (key, t)
    if best is None:
        return None
    term = best[1]
    if side is not None and side.meaning.lower() in _tokens(term.type.meaning):
        side = None  # "Middle lobe of right lung" already says it
    return term.with_modifier(side)


def term_for_label(name: str, terminology: dict[str, Any] | None) -> Term:
    """The codes a label is exported with: its own, else a suggestion from its name, else a
    generic lesion or anatomical structure."""
    if terminology:
        return Term.from_dict(terminology)
    found = suggest(name)
    if found is not None:
        return found
    if any(w in name.lower() for w in _LESION_WORDS):
        return Term(codes.cid7150.MorphologicallyAbnormalStructure, codes.SCT.Lesion)
    return Term(codes.cid7150.AnatomicalStructure, codes.SCT.Organ)
