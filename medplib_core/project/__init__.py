"""Project files (save/open a whole session) and the autosave/recovery store."""

from .format import (PROJECT_FILE, PROJECT_FORMAT, PROJECT_SUFFIX, Project, ProjectError,  # noqa: F401
                     PromptRecord, is_project, project_folder, save_project, scan_reference)
from .reader import load_project  # noqa: F401
from .recovery import Orphan, RecoverySession, RecoveryStore  # noqa: F401
