"""The annotation session: what a user is doing to one scan, shared by the GUI, the batch,
the engine server and scripts (see `session.AnnotationSession`).

Modules: ``session`` (the session and its operations), ``history`` (one undo history for voxel
and label-set steps), ``proposal`` (the pending proposal, mask planes), ``events`` (named events
views subscribe to), ``chat`` / ``regions`` / ``conversation`` (the chat transcript, region
references, asking and the model-session cache), ``save_state`` ("unsaved changes" per save
target) and ``project_io`` (session <-> project file).
"""

from .chat import AnswerState, ChatBook, Conversation, Message, Role  # noqa: F401
from .conversation import ChatBusyError, ConversationCache, Question, SessionChat  # noqa: F401
from .events import Event, Events, SessionEvents  # noqa: F401
from .history import History, Step  # noqa: F401
from .proposal import STORED, AcceptJob, Proposal, mask_on_slice, plane_view  # noqa: F401
from .regions import RegionKind, RegionRef, RegionSource, grounding_prompt  # noqa: F401
from .save_state import Mark, SaveState, SaveTarget  # noqa: F401
from .session import AnnotationSession  # noqa: F401
