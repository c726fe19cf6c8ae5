"""The review queue of batch runs in the GUI, and running a batch from the GUI.

``install_review(window)`` adds the Review dock (case list, Accept / Save edits / Reject,
Previous / Next, summary, export) and File ▸ Review (run a batch, open a run) to a `MainWindow`.
"""

from .install import REVIEW_SHORTCUTS, ReviewUI, install_review  # noqa: F401
