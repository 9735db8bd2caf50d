"""Set up a separate process of the demo loader (the classifier's retraining
runs in one while the sensors load).

This module imports no models: a fresh ``spawn`` process imports it before
Django is set up, and sets Django up here, on the parent's database.
"""

from __future__ import annotations

import atexit
import os


def setup(database: str) -> None:
    """Process initialiser: Django, connected to the parent's database (a
    test run's database is not the one the settings name)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chengyun.settings")
    django.setup()
    from django.db import connection

    connection.settings_dict["NAME"] = database
    atexit.register(connection.close)
