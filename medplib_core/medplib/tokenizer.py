"""The MedPLIB tokenizer with the trained-with (transformers 4.31 slow LLaMA) rules, spec §5.

Rules reproduced: the text is split on added/special tokens (longest match); around every
added token that is a plain string (all 267 MedPLIB tokens) whitespace is stripped on both
sides; special tokens stored as ``AddedToken`` use their own strip flags (normally none);
every remaining text piece is encoded separately by SentencePiece, so each one gets the
dummy-prefix space (``legacy=True``). Ids of added tokens come from the files, never from
a hard-coded table; `id_report` compares them with the table the spec assumes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from medplib_core.errors import LoadError

MEDPLIB_TOKENS: list[str] = (
    ["<SEG>", "<ref>", "</ref>", "<region>", "</region>", "<sr>", "</sr>", "<mask>", "</mask>"]
    + [f"<gen_{i}>" for i in range(1, 257)]
    + ["<im_start>", "<im_end>"]
)
IMAGE_MARK = "<image>"
IMAGE_SENTINEL = -200
REGION_SENTINEL = -300


@dataclass
class _Special:
    content: str
    lstrip: bool
    rstrip: bool


def _special_from(value, default: str) -> _Special | None:
    """A special token from tokenizer_config / special_tokens_map (string or AddedToken dict)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return _Special(value.get("content", default), bool(value.get("lstrip", False)),
                        bool(value.get("rstrip", False)))
    return _Special(str(value), True, True)  # 4.31: plain strings are stripped on both sides


class MedplibTokenizer:
    """SentencePiece base + added-token table with the §5.3 rules."""

    def __init__(self, sp_model_file: str | Path, added: dict[str, int],
                 specials: dict[str, _Special | None], add_bos: bool = True,
                 clean_up_spaces: bool = True):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(sp_model_file))
        self.base_size = self.sp.get_piece_size()
        self.added = dict(added)
        self.added_by_id = {i: t for t, i in self.added.items()}
        self.specials = specials
        self.add_bos = add_bos
        self.clean_up_spaces = clean_up_spaces
        self.bos_id = self._special_id("bos", 1)
        self.eos_id = self._special_id("eos", 2)
        self.unk_id = self._special_id("unk", 0)
        self.pad_id = self._special_id("pad", self.unk_id)
        # strip flags per splitting token: (lstrip-of-left-text, rstrip... ) as in 4.31
        self._strip: dict[str, tuple[bool, bool]] = {t: (True, True) for t in self.added}
        for sp_tok in specials.values():
            if sp_tok is not None and sp_tok.content not in self.added:
                self._strip[sp_tok.content] = (sp_tok.lstrip, sp_tok.rstrip)
        toks = sorted(self._strip, key=len, reverse=True)
        self._split_re = re.compile("(" + "|".join(re.escape(t) for t in toks) + ")")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, folder: str | Path) -> "MedplibTokenizer":
        folder = Path(folder)
        model = folder / "tokenizer.model"
        if not model.is_file():
            raise LoadError(folder, "no tokenizer.model (SentencePiece) in the checkpoint folder")
        cfg = _read_json(folder / "tokenizer_config.json") or {}
        smap = _read_json(folder / "special_tokens_map.json") or {}
        added = _read_json(folder / "added_tokens.json")
        if added is None:
            added = _added_from_other_files(folder, cfg)
        if not added:
            raise LoadError(folder, "no added tokens found (added_tokens.json is missing)",
                            "the MedPLIB tokenizer needs its 267 added tokens")
        specials = {}
        for kind, default in (("bos", "<s>"), ("eos", "</s>"), ("unk", "<unk>"), ("pad", None)):
            # tokenizer_config.json may say pad null; special_tokens_map.json then has it (§19.8)
            val = cfg.get(f"{kind}_token")
            if val is None:
                val = smap.get(f"{kind}_token")
            if val is None and default is not None:
                val = {"content": default}
            specials[kind] = _special_from(val, default or "")
        return cls(model, {str(k): int(v) for k, v in added.items()}, specials,
                   add_bos=bool(cfg.get("add_bos_token", True)),
                   clean_up_spaces=bool(cfg.get("clean_up_tokenization_spaces", True)))

    def _special_id(self, kind: str, default: int) -> int:
        tok = self.specials.get(kind)
        if tok is None:
            return default
        return self.token_to_id(tok.content)

    # -- vocabulary ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.base_size + len([i for i in self.added.values() if i >= self.base_size])

    def token_to_id(self, token: str) -> int:
        if token in self.added:
            return self.added[token]
        i = self.sp.piece_to_id(token)
        if i == self.sp.unk_id() and token != self.sp.id_to_piece(self.sp.unk_id()):
            raise KeyError(token)
        return i

    def id_of(self, token: str) -> int:
        """Id of an added token such as ``<SEG>``; KeyError if the files lack it."""
        return self.added[token]

    # -- encoding -----------------------------------------------------------------------------
    def split(self, text: str) -> list[str]:
        """§5.3 steps 1-3: pieces in order, special tokens kept whole, stripping applied."""
        parts = [p for p in self._split_re.split(text) if p != ""]
        for i, p in enumerate(parts):
            flags = self._strip.get(p)
            if flags is None:
                continue
            lstrip, rstrip = flags
            if rstrip and i + 1 < len(parts) and parts[i + 1] not in self._strip:
                parts[i + 1] = parts[i + 1].lstrip()
            if lstrip and i > 0 and parts[i - 1] not in self._strip:
                parts[i - 1] = parts[i - 1].rstrip()
        return [p for p in parts if p != ""]

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        ids: list[int] = []
        if self.add_bos if add_bos is None else add_bos:
            ids.append(self.bos_id)
        for piece in self.split(text):
            if piece in self._strip:
                ids.append(self.token_to_id(piece))
            else:
                ids.extend(self.sp.encode(piece))
        return ids

    def encode_prompt(self, prompt: str, region_placeholders: bool = True) -> list[int]:
        """``tokenizer_image_token`` plus region placeholders (§5.3).

        Chunks between ``<image>`` marks are encoded separately (each with BOS), only the first
        BOS is kept and chunks are joined by -200; then -300 goes between each adjacent
        (``<region>``, ``</region>``) pair. ``region_placeholders=False`` leaves the pair
        without its -300: what the reference's ``prepare_inputs_labels_for_multimodal`` feeds
        when no region masks are passed (``vqa_infer.py --eval_vqa``), since it filters
        ``input_ids != REGION_TOKEN_INDEX`` either way."""
        ids: list[int] = []
        for n, chunk in enumerate(prompt.split(IMAGE_MARK)):
            part = self.encode(chunk)
            if n:
                ids.append(IMAGE_SENTINEL)
                if part and part[0] == self.bos_id and self.add_bos:
                    part = part[1:]
            ids.extend(part)
        if not region_placeholders:
            return ids
        start, end = self.added.get("<region>"), self.added.get("</region>")
        out: list[int] = []
        for i, t in enumerate(ids):
            out.append(t)
            if t == start and i + 1 < len(ids) and ids[i + 1] == end:
                out.append(REGION_SENTINEL)
        return out

    # -- decoding -----------------------------------------------------------------------------
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        """4.31 slow-tokenizer decode: bos/eos/unk/pad skipped, added tokens kept as text and
        joined to the neighbouring text with single spaces."""
        skip = {self.bos_id, self.eos_id, self.unk_id, self.pad_id} if skip_special_tokens else set()
        subs: list[str] = []
        run: list[int] = []
        for t in ids:
            if t in skip or t < 0:
                continue
            if t in self.added_by_id or t >= self.base_size:
                if run:
                    subs.append(self.sp.decode(run))
                    run = []
                subs.append(self.added_by_id.get(t, ""))
            else:
                run.append(t)
        if run:
            subs.append(self.sp.decode(run))
        text = " ".join(subs)
        return _clean_up(text) if self.clean_up_spaces else text

    # -- checks -------------------------------------------------------------------------------
    def id_report(self) -> dict[str, object]:
        """Compare the files' ids with the assumed table (§5.2, open question 2)."""
        expected = {t: 32000 + i for i, t in enumerate(MEDPLIB_TOKENS)}
        relative = {t: self.base_size + i for i, t in enumerate(MEDPLIB_TOKENS)}
        missing = [t for t in MEDPLIB_TOKENS if t not in self.added]
        return {
            "base_vocab": self.base_size,
            "vocab_size": len(self),
            "added_tokens": len(self.added),
            "missing_medplib_tokens": missing,
            "ids_as_assumed_for_7b": all(self.added.get(t) == i for t, i in expected.items()),
            "ids_in_reference_order": all(self.added.get(t) == i for t, i in relative.items()),
            "seg_id": self.added.get("<SEG>"),
            "im_end_id": self.added.get("<im_end>"),
        }


def _clean_up(text: str) -> str:
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                 (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text


def _read_json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LoadError(path, f"cannot be parsed: {exc}") from exc


def _added_from_other_files(folder: Path, cfg: dict) -> dict[str, int]:
    """Fallback when added_tokens.json is absent: newer tokenizer_config / tokenizer.json."""
    out: dict[str, int] = {}
    for i, d in (cfg.get("added_tokens_decoder") or {}).items():
        out[d.get("content")] = int(i)
    tj = _read_json(folder / "tokenizer.json") or {}
    for d in tj.get("added_tokens", []):
        out.setdefault(d.get("content"), int(d.get("id")))
    for s in ("<s>", "</s>", "<unk>"):
        out.pop(s, None)
    return out
