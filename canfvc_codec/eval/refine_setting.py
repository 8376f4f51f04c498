"""The encoder's latent refinement as an evaluation records it (``canfvc encode --refine N
--refine-inter M``).

Refinement changes the streams, not the format, so points coded with different settings are
different curves: an evaluation names its setting in the stream files, ``results.json`` and the
summary, and a merge refuses to join settings. Each setting has one spelling everywhere, the
default none at all, so records written before the option existed read as the default.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RefineSetting:
    """``steps`` in I-frames; ``inter_steps`` in P-frames, None when the same as ``steps``."""

    steps: int = 0
    inter_steps: int | None = None

    def __post_init__(self) -> None:
        if self.inter_steps == self.steps:
            object.__setattr__(self, "inter_steps", None)

    def flags(self) -> list[str]:
        """The ``canfvc encode`` options; none for the default."""
        flags = ["--refine", str(self.steps)] if self.steps else []
        if self.inter_steps is not None:
            flags += ["--refine-inter", str(self.inter_steps)]
        return flags

    def __str__(self) -> str:
        return " ".join(self.flags())

    def stem(self) -> str:
        """The suffix of the setting's stream and point files: ``_refine12_refineinter0``."""
        stem = f"_refine{self.steps}" if self.steps else ""
        if self.inter_steps is not None:
            stem += f"_refineinter{self.inter_steps}"
        return stem

    def record(self) -> dict:
        """What ``results.json`` stores under ``canfvc``; nothing for the default."""
        record: dict = {"refine": self.steps} if self.steps else {}
        if self.inter_steps is not None:
            record["refine_inter"] = self.inter_steps
        return record

    @classmethod
    def from_record(cls, record: dict) -> RefineSetting:
        return cls(record.get("refine", 0), record.get("refine_inter"))
