"""Entry point of the frozen (PyInstaller) MedPLIB Studio: the same launcher as the wheel's
``medplib-studio`` script, with multiprocessing's frozen-child hook for the batch workers."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from app.launcher import main

    sys.exit(main())
