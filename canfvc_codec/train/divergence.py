"""Watching a training run for divergence.

A run left alone for hours can diverge: on this CPU the intra phase at the schedule's learning
rate once fell from about 29.5 dB to 19-22 dB training PSNR within 60 steps, and the checkpoint
written minutes later held the broken weights (docs/lab/training-notes.md). :class:`DivergenceWatch`
sees each log window's PSNR; when it falls well below the phase's recent windows, the trainer goes
back to its last healthy state with half the learning rate (``Trainer._recover``), and writes no
checkpoint while the run looks unhealthy.

The windows of one phase vary by a couple of dB, since λ is drawn per batch; a divergence drops
several more and stays down, so the watch asks for a drop of :data:`DROP_DB` below the median of
the last :data:`HISTORY` healthy windows, :data:`CONSECUTIVE` windows in a row.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

DROP_DB = 4.0  # below the recent median: twice the spread λ alone gives the windows
HISTORY = 16  # healthy windows of a phase that the median is taken over
MIN_HISTORY = 8  # windows a phase needs before any is judged
CONSECUTIVE = 2  # windows in a row that must drop, so that one bad batch is not a divergence
RECOVERY_LR_FACTOR = 0.5  # the learning rate after each recovery, relative to before


@dataclass
class DivergenceWatch:
    """The recent healthy PSNR of each phase's log windows, and how many windows in a row have
    dropped below them."""

    recent: dict[str, deque[float]] = field(default_factory=dict)
    dropped: int = 0

    @property
    def healthy(self) -> bool:
        return self.dropped == 0

    def observe(self, phase: str, psnr: float) -> bool:
        """Count one log window of ``phase``; True when the run has diverged."""
        history = self.recent.setdefault(phase, deque(maxlen=HISTORY))
        known = len(history) >= MIN_HISTORY
        if math.isnan(psnr) or (known and psnr < statistics.median(history) - DROP_DB):
            self.dropped += 1
            return self.dropped >= CONSECUTIVE
        self.dropped = 0
        history.append(psnr)
        return False

    def reset(self) -> None:
        """After going back to a healthy state: the windows since no longer count."""
        self.dropped = 0
