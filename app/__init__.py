"""MedPLIB Studio desktop application (PySide6); see `app.main`.

PySide6 6.12.0 on CPython < 3.12 drops a reference to ``None`` on every void Qt call and
aborts after a few thousand of them; pyproject.toml excludes that release.
"""
