"""The console's intake pages use the intake world (categories 0101/0102, a
trained classifier) and its staff."""

from ..intake.conftest import intake_world, staff  # noqa: F401
