"""Training without the range coder.

Training never range-codes anything, but the entropy models import ``constriction`` when they are
imported. On a machine that only trains (a GPU box without the package) a stand-in module lets
the networks import; any attempt to actually range-code then fails with one clear line.
"""

from __future__ import annotations

import importlib
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
        return _stand_in(f"{self._name}.{attribute}", attribute)

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise RangeCoderMissing(
            f"{self._name} needs the constriction package (pip install constriction)"
        )


def _stand_in(name: str, attribute: str) -> _Missing:
    # Dunder look-ups (``__file__``, ``__path__``...) come from tools inspecting modules: they
    # must see an ordinary missing attribute, not a stand-in.
    if attribute.startswith("__"):
        raise AttributeError(attribute)
    return _Missing(name)


def allow_training_without_range_coder() -> bool:
    """Install the stand-in when constriction is missing; True if it was installed."""
    try:
        importlib.import_module(STAND_IN)
        return False
    except ImportError:
        pass
    module = types.ModuleType(STAND_IN)
    module.__getattr__ = lambda attribute: _stand_in(f"{STAND_IN}.{attribute}", attribute)  # type: ignore[method-assign]
    sys.modules[STAND_IN] = module
    return True
