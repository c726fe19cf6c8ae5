"""Incremental detokenisation at O(1) cost per token, identical to `MedplibTokenizer.decode`.

The full decode (spec §5.5, transformers 4.31 slow-tokenizer semantics) is: skip bos/eos/unk/
pad, decode each run of SentencePiece ids, keep added tokens as text, join the pieces with
single spaces, then apply the clean-up replacements (``" ."`` -> ``"."`` and so on). Here:

* a run of SentencePiece ids is decoded through a two-offset window (the new token and the
  one before it), so each token costs a constant amount of work; text ending in U+FFFD waits
  for the rest of a multi-byte character;
* the clean-up only deletes spaces inside short patterns, so the raw text can be cut at
  points no pattern can straddle (between two alphanumeric characters, or at a space between
  alphanumerics) and each finished part cleaned on its own: ``clean(a + b) == clean(a) +
  clean(b)`` there. Text up to the last such point is emitted; the tail waits (about a word).
"""

from __future__ import annotations

# consecutive non-space characters inside a clean-up pattern (" 've", " 're")
_PATTERN_PAIRS = {("v", "e"), ("r", "e")}
_PATTERN_STARTERS = set(".?!,'n")  # characters that can follow the leading space of a pattern


def _safe_cut(text: str, i: int) -> bool:
    """May ``text`` be cut before index ``i`` (needs ``text[i + 1]`` when ``text[i]`` is a space)?"""
    c, d = text[i - 1], text[i]
    if not c.isalnum():
        return False
    if d.isalnum():
        return (c, d) not in _PATTERN_PAIRS
    if d == " " and i + 1 < len(text):
        e = text[i + 1]
        return e.isalnum() and e not in _PATTERN_STARTERS
    return False


def _anchor_piece(tok) -> int:
    """A plain piece that is not a word start (no leading "▁") and not a byte."""
    cached = getattr(tok, "_detok_anchor", None)
    if cached is None:
        sp = tok.sp
        cached = next(i for i in range(3, sp.get_piece_size())
                      if not sp.is_control(i) and not sp.is_byte(i) and not sp.is_unknown(i)
                      and not sp.id_to_piece(i).startswith("\u2581") and sp.decode([i]).isalpha())
        tok._detok_anchor = cached
    return cached


class IncrementalDetokenizer:
    """Feed generated ids one at a time; `push` returns the newly final text."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.skip = {tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id, tokenizer.pad_id}
        self.clean = tokenizer.clean_up_spaces
        self.emitted: list[str] = []
        self._n_emitted = 0
        self._pending = ""  # raw (not yet cleaned) text after the last cut
        self._run: list[int] = []  # the current run of SentencePiece ids
        self._prefix = 0  # window start in the run
        self._read = 0  # ids of the run already turned into text
        self._subs = 0  # pieces (runs and added tokens) started so far
        self._anchor = _anchor_piece(tokenizer)

    # -- raw text ---------------------------------------------------------------------------
    def _raw_delta(self, token: int) -> str:
        tok = self.tok
        if token in self.skip or token < 0:
            return ""
        if token in tok.added_by_id or token >= tok.base_size:
            rest = self._flush_run()
            self._run, self._prefix, self._read = [], 0, 0
            sep = " " if self._subs else ""
            self._subs += 1
            return rest + sep + tok.added_by_id.get(token, "")
        sep = ""
        if not self._run:  # a new run of SentencePiece pieces
            sep = " " if self._subs else ""
            self._subs += 1
        self._run.append(token)
        new, old = self._window_text(len(self._run))
        if len(new) > len(old) and not new.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._run)
            return sep + new[len(old):]
        return sep

    # -- cleaned text -----------------------------------------------------------------------
    def push(self, token: int) -> str:
        """Add one id; return the text that became final (often empty: a word is pending)."""
        delta = self._raw_delta(token)
        if not delta:
            return ""
        start = max(len(self._pending), 1)
        self._pending += delta
        cut = 0
        for i in range(len(self._pending) - 1, start - 2, -1):
            if i >= 1 and _safe_cut(self._pending, i):
                cut = i
                break
        if not cut:
            return ""
        done, self._pending = self._pending[:cut], self._pending[cut:]
        return self._emit(done)

    def _emit(self, raw: str) -> str:
        from .tokenizer import _clean_up

        text = _clean_up(raw) if self.clean else raw
        self.emitted.append(text)
        self._n_emitted += len(text)
        return text

    def _flush_run(self) -> str:
        """Text of run ids still waiting for the rest of a character (it will not come)."""
        if not self._run or self._read >= len(self._run):
            return ""
        tail, old = self._window_text(len(self._run))
        self._read = len(self._run)
        return tail[len(old):]

    def _window_text(self, end: int) -> tuple[str, str]:
        """Decoded ``run[prefix:end]`` and ``run[prefix:read]``. Inside a run the window is
        decoded after an anchor piece, so SentencePiece does not drop its leading spaces
        (it does so only at the start of a run, as the full decode does)."""
        sp = self.tok.sp
        if self._prefix == 0:
            old = sp.decode(self._run[:self._read]) if self._read else ""
            return sp.decode(self._run[:end]), old
        a = [self._anchor]
        base = len(sp.decode(a))
        return (sp.decode(a + self._run[self._prefix:end])[base:],
                sp.decode(a + self._run[self._prefix:self._read])[base:])

    def finish(self) -> str:
        """Everything still pending (call once the answer is complete)."""
        self._pending += self._flush_run()
        raw, self._pending = self._pending, ""
        return self._emit(raw) if raw else ""

    def text_tail(self, n: int) -> str:
        """The last ``n`` characters the full decode would end with now (for stop strings);
        costs O(n + pending)."""
        from .tokenizer import _clean_up

        pending = _clean_up(self._pending) if self.clean else self._pending
        head = ""
        need = n - len(pending)
        for part in reversed(self.emitted):
            if need <= 0:
                break
            head = part[-need:] + head
            need -= len(part)
        return (head + pending)[-n:] if n else ""

    @property
    def pending_chars(self) -> int:
        """Raw characters held back (the current word)."""
        return len(self._pending)

    @property
    def text(self) -> str:
        """Text emitted so far."""
        return "".join(self.emitted)
