"""Render the application icon (the window's qtawesome "engine" glyph) to a PNG for installers.

    python installers/make_icon.py OUT.png [SIZE]
"""

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main(out: str, size: int = 256) -> int:
    from PySide6.QtWidgets import QApplication

    QApplication(sys.argv[:1])
    from app.resources import icon

    pixmap = icon("engine", color="#2a7ab8").pixmap(size, size)
    return 0 if not pixmap.isNull() and pixmap.save(out, "PNG") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 256))
