"""Incremental detokenisation equals the full 4.31-style decode (spec §5.5) on any ids."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medplib_core.medplib.detok import IncrementalDetokenizer

from test_medplib_support import tiny, tiny_paths, tokenizer  # noqa: F401  (fixtures)


def _stream(tok, ids):
    det = IncrementalDetokenizer(tok)
    parts = [det.push(t) for t in ids]
    parts.append(det.finish())
    return parts


def _interesting_ids(tok) -> list[int]:
    """Pieces that exercise the clean-up patterns, byte fallback and added tokens."""
    sp = tok.sp
    want = []
    for text in (" .", " ?", " !", " ,", " '", " n't", " 'm", " 's", " 've", " 're", "n", "'",
                 " ve", " re", "liver", " the", "é", "ü", "→", " 1", "2"):
        want += sp.encode(text)
    want += [sp.piece_to_id(f"<0x{b:02X}>") for b in "é→".encode()]
    want += [tok.id_of("<SEG>"), tok.id_of("<region>"), tok.eos_id, tok.bos_id, tok.unk_id]
    return sorted(set(want))


def test_incremental_equals_full_decode_on_text(tokenizer):
    for text in ("The liver is normal. There's no mass, isn't it? I'm sure they've seen it!",
                 "Lesion ' here ' and 're ' ve n't", "Grüße → 12.5 cm <SEG> .", "word  ,  ."):
        ids = tokenizer.encode(text, add_bos=False) + [tokenizer.eos_id]
        parts = _stream(tokenizer, ids)
        assert "".join(parts) == tokenizer.decode(ids)
        assert sum(1 for p in parts if p) >= 2  # it streams, not only at the end


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_incremental_equals_full_decode_on_random_ids(tokenizer, data):
    pool = _interesting_ids(tokenizer)
    ids = data.draw(st.lists(st.one_of(st.sampled_from(pool),
                                       st.integers(0, len(tokenizer) - 1)), max_size=40))
    parts = _stream(tokenizer, ids)
    assert "".join(parts) == tokenizer.decode(ids)
