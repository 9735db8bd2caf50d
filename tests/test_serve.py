"""`chengyun serve`, the production server (granian), as `make demo` runs it.

The server runs in its own processes against the test database (migrated by
pytest-django), so the test commits nothing and holds no transaction open
while the server reads: ``transaction=True``.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chengyun.console.management.commands.serve import THREADS_DEFAULT

from .factories import database_url

pytest.importorskip("granian", reason="granian (chengyun serve's server) is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (the server's workers)."""
    found = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                status = (d / "status").read_text()
            except OSError:
                continue
            if re.search(rf"^PPid:\s+{pid}$", status, re.M):
                found.add(int(d.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_answers_pages_and_static_files_logs_them_and_stops_on_sigterm(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CHENGYUN_DATA_DIR": str(tmp_path / "data"),
        "CHENGYUN_STATIC_ROOT": str(tmp_path / "static"),
        "CHENGYUN_ALLOWED_HOSTS": "127.0.0.1",
    }
    env.pop("CHENGYUN_WORKERS", None)
    env.pop("CHENGYUN_THREADS", None)
    exe = str(Path(sys.executable).with_name("chengyun"))
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, _headers, home = get(port, "/")
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200, log_path.read_text()

        # A real page: the public portal's home links its hashed (collected) stylesheet.
        assert b"<html" in home.lower()
        css = re.search(rb'/static/[^"]+\.[0-9a-f]{12}\.css', home)
        assert css, home[:2000]
        status, _headers, body = get(port, "/login/")
        assert status == 200 and b"password" in body.lower()

        # The static file, served by WhiteNoise from the collected files.
        status, headers, body = get(port, css.group().decode())
        assert status == 200
        assert headers["content-type"].startswith("text/css")
        assert "immutable" in headers.get("cache-control", "")
        assert int(headers["content-length"]) == len(body) > 0
        assert get(port, "/static/no-such-file.css")[0] == 404

        workers = children(proc.pid)
        assert len(workers) == 2, log_path.read_text()

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, log_path.read_text()
        assert time.monotonic() - started < 5
        deadline = time.monotonic() + 5
        while any(alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(p) for p in workers), "a worker outlived the server"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    out = log_path.read_text()
    assert f"http://127.0.0.1:{port}/" in out and f"granian, 2 workers x {THREADS_DEFAULT} threads" in out
    # One access-log line a request, on stdout.
    assert re.search(r'"GET / HTTP/1\.1" 200 ', out), out
    assert re.search(rf'"GET {re.escape(css.group().decode())} HTTP/1\.1" 200 ', out), out
    with pytest.raises(OSError):
        get(port, "/")  # nothing listens any more
