"""Shared fixtures: a tiny synthetic city, its departments, categories and people.

Every fixture builds fresh rows inside the test's own transaction; nothing
mutable is shared between tests.
"""

from __future__ import annotations

import pytest
from hypothesis import settings as hypothesis_settings

from chengyun.areas import locator as locator_mod
from chengyun.open311.services import clear_recent

from . import factories as f

# Hypothesis: modest, deterministic enough for CI, and no example database in the checkout.
hypothesis_settings.register_profile("chengyun", max_examples=30, deadline=None, database=None)
hypothesis_settings.load_profile("chengyun")


@pytest.fixture(autouse=True)
def _fresh_locator():
    """The locator and Open311's recent lookups are per-process caches; each
    test starts and ends without them (ids repeat between tests)."""
    locator_mod.invalidate()
    clear_recent()
    yield
    locator_mod.invalidate()
    clear_recent()


@pytest.fixture(autouse=True)
def _test_settings(settings):
    # Pages render {% static %}; the manifest storage needs `collectstatic`, tests do not.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.LANGUAGE_CODE = "en"
    # Machine channels process each report before answering, so a test can
    # look at the case at once; tests of the queue itself set "worker".
    settings.INTAKE_QUEUE = "inline"


@pytest.fixture
def tree(db, tmp_path):
    """city > 2x2 districts > 2 streets each (see factories.build_area_tree)."""
    return f.build_area_tree(tmp_path)


@pytest.fixture
def world(tree):
    """Areas + water/roads departments per district + category 01/0101 routed to
    the district's water department with its roads department assisting."""
    return f.build_world(tree)


@pytest.fixture
def admin_user(db):
    return f.make_user(username="root", superuser=True)
