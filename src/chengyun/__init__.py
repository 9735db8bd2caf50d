"""Chengyun (城运): open-source city operations platform."""

__version__ = "0.1.0"
