"""Imaging I/O: DICOM (files, folders, multi-frame), NIfTI and 2D images into `Volume`s."""

from .dicom_series import SeriesInfo, list_series
from .loader import load

__all__ = ["load", "list_series", "SeriesInfo"]
