"""Training without the range coder.

Training never range-codes anything, but the entropy models import ``constriction`` when they are
imported. On a machine that only trains (a GPU box without the package) a stand-in module lets
the networks import; any attempt to actually range-code then fails with one clear line.
"""

from __future__ import annotations

import importlib.util
import sys
import types

from canfvc_codec.errors import CanfvcError

STAND_IN = "constriction"


class RangeCoderMissing(CanfvcError):
    """Range coding was asked for on a machine without constriction."""


class _Missing:
    """Any attribute is another stand-in; calling one raises."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> _Missing:
        return _Missing(f"{self._name}.{attribute}")

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise RangeCoderMissing(
            f"{self._name} needs the constriction package (pip install constriction)"
        )


def allow_training_without_range_coder() -> bool:
    """Install the stand-in when constriction is missing; True if it was installed."""
    if STAND_IN in sys.modules or importlib.util.find_spec(STAND_IN) is not None:
        return False
    module = types.ModuleType(STAND_IN)
    module.__getattr__ = lambda attribute: _Missing(f"{STAND_IN}.{attribute}")  # type: ignore[method-assign]
    sys.modules[STAND_IN] = module
    return True
