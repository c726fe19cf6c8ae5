"""A local engine process ends with the application that started it.

`LocalEngineProcess` hands its own pid to the child in ``MEDPLIB_ENGINE_PARENT_PID``. When the
application is killed (``kill -9``, a crash) nobody calls ``stop()``, and a MedPLIB process would
otherwise keep its GPU memory forever; the child notices that its parent is gone (it has been
re-parented) and exits.
"""

from __future__ import annotations

import os
import threading
import time

PARENT_ENV = "MEDPLIB_ENGINE_PARENT_PID"


def exit_with_parent(poll_s: float = 1.0) -> bool:
    """Watch the parent named in the environment (if any) on a daemon thread; True when watching.

    The variable is removed from this process's environment, so processes it starts in turn
    (batch workers) do not inherit a parent that is not theirs.
    """
    value = os.environ.pop(PARENT_ENV, "")
    try:
        parent = int(value)
    except ValueError:
        return False
    if os.getppid() != parent:  # already gone before we started watching
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    return True
