"""The load report: what was read from where, what is missing or extra, and the answers the
files give to the spec's open questions (§18: config values, token ids, shard layout,
``inv_freq``/CLIP keys in the shards, router dtype, optimizer in the .pth)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadReport:
    checkpoint: str
    device: str
    dtype: str
    shard_format: str = ""
    shards: list[str] = field(default_factory=list)
    tensors_in_files: int = 0
    tensors_loaded: dict[str, int] = field(default_factory=dict)  # source -> count
    parameters: int = 0
    file_dtypes: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    open_questions: dict[str, Any] = field(default_factory=dict)
    comparisons: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def format(self, max_list: int = 8) -> str:
        """Human-readable multi-line summary (the CLI prints this)."""
        lines = [
            f"checkpoint   {self.checkpoint}",
            f"device       {self.device} ({self.dtype}), loaded in {self.seconds:.1f} s",
            f"shards       {len(self.shards)} {self.shard_format} file(s): "
            + ", ".join(self.shards[:4]) + (" ..." if len(self.shards) > 4 else ""),
            f"tensors      {self.tensors_in_files} in the checkpoint files; loaded "
            + ", ".join(f"{n} from {src}" for src, n in self.tensors_loaded.items()),
            f"parameters   {self.parameters:,}",
            "file dtypes  " + ", ".join(f"{k}: {v}" for k, v in sorted(self.file_dtypes.items())),
        ]
        for title, items in (("missing", self.missing), ("unexpected", self.unexpected),
                             ("ignored", self.ignored)):
            if items:
                shown = ", ".join(items[:max_list])
                more = f" (+{len(items) - max_list} more)" if len(items) > max_list else ""
                lines.append(f"{title:<12} {len(items)}: {shown}{more}")
        for key, val in self.open_questions.items():
            lines.append(f"check        {key}: {val}")
        for key, val in self.comparisons.items():
            lines.append(f"compare      {key}: {val}")
        lines += [f"note         {n}" for n in self.notes]
        return "\n".join(lines)
