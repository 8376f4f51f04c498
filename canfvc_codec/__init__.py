"""canfvc: a learned video codec built on CANF-VC."""

__version__ = "0.1.0"
