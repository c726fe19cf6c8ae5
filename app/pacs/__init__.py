"""PACS in the GUI: File ▸ Open from PACS… (study browser) and File ▸ Send to PACS… (SEG).

`install_pacs(window)` adds both; everything that talks to a server lives in
`medplib_core.pacs` and runs on worker threads.
"""

from .install import install_pacs  # noqa: F401
