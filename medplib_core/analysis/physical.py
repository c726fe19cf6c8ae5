"""Whether a scan's spacing is a physical length (millimetres) or only a pixel pitch."""

from __future__ import annotations

from ..volume import Volume


def has_physical_spacing(volume: Volume) -> bool:
    """True when ``volume.spacing`` is in millimetres, so lengths, areas and volumes mean something.

    A photograph or screenshot loaded as a 2D image has a pixel grid but no physical size.
    Everything in `medplib_core.analysis` asks this one function (the place to switch to an
    explicit flag on `Volume` once it has one).
    """
    flag = getattr(volume, "physical_spacing", None)
    if isinstance(flag, bool):
        return flag
    return not (volume.source is not None and volume.source.kind == "image")


def length_unit(volume: Volume) -> str:
    """``"mm"`` for scans with physical spacing, ``"px"`` otherwise."""
    return "mm" if has_physical_spacing(volume) else "px"
