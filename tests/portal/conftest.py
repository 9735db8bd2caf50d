"""Portal fixtures: the intake world (categories 01 > 0101 water leak, 0102
street lights, a trained classifier) and an upload directory of the test's own."""

from __future__ import annotations

import pytest

from ..intake.conftest import intake_world, staff  # noqa: F401 - fixtures used by the portal tests


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"

