"""Chengyun's SQLite backend: a transaction that finds the write lock taken
waits for it and then goes ahead; past the connection's timeout it fails with
SQLite's own "database is locked"; plain statements keep SQLite's busy timeout."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from django.db import connection, connections, transaction

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's single writer only"),
]


def hold_write_lock(seconds: float, started: threading.Event) -> None:
    """Another connection to the same file takes the write lock for ``seconds``."""
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    started.set()
    time.sleep(seconds)
    other.execute("ROLLBACK")
    other.close()


def test_a_transaction_waits_for_the_lock_and_then_goes_ahead():
    started = threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(0.15, started))
    holder.start()
    started.wait(5)
    t0 = time.monotonic()
    with transaction.atomic():
        waited = time.monotonic() - t0
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
    holder.join()
    assert waited > 0.1  # it waited for the other writer instead of failing (how promptly: bench/intake.py)
    with connection.cursor() as cur:  # and SQLite's busy timeout is back for plain statements
        cur.execute("PRAGMA busy_timeout")
        assert cur.fetchone()[0] == int(connection.settings_dict["OPTIONS"]["timeout"] * 1000)


def test_past_the_timeout_the_lock_error_is_raised():
    # A connection of its own with a short timeout. Its settings are a copy:
    # create_connection() hands every connection the same settings dict, and
    # changing that one would shorten the timeout of every later connection
    # in this process (it once made the 50-thread intake test fail).
    settings = {**connection.settings_dict, "OPTIONS": {**connection.settings_dict["OPTIONS"], "timeout": 0.05}}
    conn = type(connections["default"])(settings, alias="short-timeout")
    started = threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(0.3, started))
    holder.start()
    started.wait(5)
    try:
        conn.ensure_connection()
        with pytest.raises(Exception, match="locked"):
            conn.set_autocommit(True)
            conn._start_transaction_under_autocommit()
    finally:
        holder.join()
        conn.close()
    assert connection.settings_dict["OPTIONS"]["timeout"] == 30  # the shared settings are untouched
