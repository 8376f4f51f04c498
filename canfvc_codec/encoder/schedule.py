"""Where the I-frames go: :class:`IntraSchedule`, shared by the encoder (``encoder/gop.py``) and the
RD estimate (``lab/estimate.py``) so that their frame types agree. Free of torch, so that the
command line can list the choices without loading the networks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from canfvc_codec.bitstream import INTER, INTRA

DEFAULT_GOP = 32
FRAME_CHOICE, RUN_CHOICE = "frame", "run"  # the adaptive choices, described in IntraSchedule
INTRA_CHOICES = (FRAME_CHOICE, RUN_CHOICE)
DEFAULT_INTRA_CHOICE = RUN_CHOICE
T = TypeVar("T")  # a coded frame, as the encoder or the RD estimate holds it


@dataclass
class IntraSchedule:
    """The frame types: I where one is due (the first frame, and ``gop`` frames after the last
    I-frame; never again when ``gop`` is 0), P elsewhere, or, with ``adaptive``, an I-frame also
    where ``choice`` finds it pays. An I-frame chosen that way restarts the count, as a scene cut
    restarts x265's keyint. The encoder and the RD estimate (``lab/estimate.py``) both decide
    through :meth:`choose`, so that their frame types agree.

    The adaptive choices (:data:`INTRA_CHOICES`), both in the cost of :func:`frame_cost`:

    - ``"frame"``: I where the I-frame costs less than the P-frame. It prices the frame alone:
      what a P-frame's errors cost the P-frames that reference it goes uncounted.
    - ``"run"``: also I where the P-frame costs more than the mean cost per frame of the run since
      the last I-frame. Adding a frame to a run lowers that mean exactly when the frame costs less
      than it, so each run ends at the length with the lowest cost per frame, the optimal
      replacement rule for costs that grow with the run's age. It counts what a fresher reference
      saves the frames after it, which the frame's own cost cannot see.
    """

    gop: int
    adaptive: bool = False
    choice: str = DEFAULT_INTRA_CHOICE
    since_intra: int | None = None  # frames coded since the last I-frame; None before any
    run_cost: float = 0.0  # summed cost of those frames (tracked for the "run" choice)

    def __post_init__(self) -> None:
        if self.choice not in INTRA_CHOICES:
            raise ValueError(f"intra choice {self.choice!r} is not one of {INTRA_CHOICES}")

    def intra_due(self) -> bool:
        return self.since_intra is None or (self.gop > 0 and self.since_intra >= self.gop)

    def coded(self, frame_type: str, cost: float = 0.0) -> None:
        """Count a coded frame of ``frame_type`` that cost ``cost``."""
        if frame_type == INTRA or self.since_intra is None:
            self.since_intra, self.run_cost = 1, cost
        else:
            self.since_intra, self.run_cost = self.since_intra + 1, self.run_cost + cost

    def _run_mean(self) -> float:
        assert self.since_intra is not None
        return self.run_cost / self.since_intra

    def choose(
        self,
        code_intra: Callable[[], T],
        code_inter: Callable[[], T],
        cost: Callable[[T], float],
        trial_intra: Callable[[], T] | None = None,
    ) -> tuple[str, T]:
        """(type, coded frame) of the next frame; the coders run only where needed.

        ``trial_intra``, when given, prices the adaptive choice's I-frame instead of
        ``code_intra``: a cheaper coding of the same frame with the same cost up to rounding.
        ``code_intra`` then runs only for the I-frames kept.
        """
        by_run = self.adaptive and self.choice == RUN_CHOICE
        if self.intra_due():
            frame_type, coded = INTRA, code_intra()
        else:
            frame_type, coded = INTER, code_inter()
            if self.adaptive:
                inter_cost = cost(coded)
                if by_run and inter_cost > self._run_mean():
                    frame_type, coded = INTRA, code_intra()
                else:
                    intra = (trial_intra or code_intra)()
                    if cost(intra) < inter_cost:
                        frame_type, coded = INTRA, intra if trial_intra is None else code_intra()
        self.coded(frame_type, cost(coded) if by_run else 0.0)
        return frame_type, coded
