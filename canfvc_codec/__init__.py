"""canfvc: a learned video codec built on CANF-VC.

The public Python API (:mod:`canfvc_codec.api`, docs/api.md): :func:`load_model`,
:func:`encode`, :func:`decode`, :func:`info`. Importing the package does not load torch: the
API loads it when a call runs networks.
"""

from canfvc_codec import api
from canfvc_codec.api import *  # noqa: F403  (the API's names, listed once in api.__all__)

__version__ = "0.1.0"

__all__ = [*api.__all__, "__version__"]
