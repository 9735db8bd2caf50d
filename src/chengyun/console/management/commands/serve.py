import os

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.utils.translation import gettext_noop

# Defaults: one worker process per core, two Python threads in each. Granian's
# Rust threads read whole requests and write responses, so a slow client holds
# no Python thread; the second thread runs Python while the first waits on the
# database or hands a request over. Measured on 2 cores (2026-11-27, A/B
# interleaved, wrk 2 threads x 16 connections, a noisy machine: load average
# 3-10, so only the ratios within a round mean much):
#
# - Open311 POST (bench/intake.py), PostgreSQL: 2x2 597/282/355 creates/s,
#   2x1 347/303/235; p99 2x2 73/124/100 ms, 2x1 124/146/156 ms.
# - Same, SQLite (one writer at a time): 2x1 440/771/354, 2x2 423/520/413,
#   3x1 437/664/440, 4x1 307/403/381 (p99 3x1 157-202 ms, 4x1 204-438 ms,
#   2x1 and 2x2 86-151 ms); with the intake pipeline beside the server 2x1
#   440/397, 2x2 403/308, 3x1 436/361.
# - Pages, PostgreSQL (demo city, 500 cases): portal home 2x2 212/176 req/s,
#   2x1 109/96, 2x4 144/172; console queue 2x2 19.7/26.8, 2x1 17.3/15.7,
#   2x4 17.9/23.9; discovery.json 2x2 704/812, 2x1 475/476, 2x4 994/906 but
#   p99 389-557 ms against 60-92.
# - Pages, SQLite: home 2x2 233/225, 2x1 236/197, 3x1 115/113; discovery.json
#   2x2 1540/1497, 2x1 1005/866, 3x1 974/670; console queue 2x2 31/33, 2x1
#   30/24, 3x1 16/14.
#
# More workers than cores lose (the processes take turns on the cores and p99
# doubles); one thread loses on PostgreSQL and on pages, and is level with two
# only for SQLite writes, which wait on one lock whatever the threads.
THREADS_DEFAULT = 2
# A worker that has not stopped this many seconds after SIGTERM/SIGINT (a
# request still running) is killed, as gunicorn's graceful timeout did.
# Granian has no per-request timeout for WSGI; it drops a client that has not
# sent its headers within 30 s, and request bodies are limited by Django.
STOP_TIMEOUT_SECONDS = 30


class Command(BaseCommand):
    help = gettext_noop("Serve Chengyun with granian (a production WSGI server) on DATABASE_URL's database.")

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("CHENGYUN_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("CHENGYUN_PORT", "8000")))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("CHENGYUN_WORKERS", "0")) or None,
                            help="worker processes (default: one per CPU core)")
        parser.add_argument("--threads", type=int,
                            default=int(os.environ.get("CHENGYUN_THREADS", str(THREADS_DEFAULT))),
                            help=f"Python threads per worker process (default {THREADS_DEFAULT}); "
                                 "granian's own threads read and write the sockets")
        parser.add_argument("--no-collectstatic", action="store_true")
        parser.add_argument("--no-access-log", action="store_true", help="no line a request on stdout")

    def handle(self, *args, **o):
        try:
            from granian import Granian
            from granian.constants import Interfaces
        except ImportError as e:  # granian is a dependency; a broken install says so plainly
            raise CommandError(f"granian is not installed ({e}); run `pip install -e .`") from e

        if not o["no_collectstatic"]:
            call_command("collectstatic", interactive=False, verbosity=0)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = max(1, o["workers"] or cores)
        threads = max(1, o["threads"])
        # The workers are forked from this process: none may inherit its database connections.
        connections.close_all()
        server = Granian(
            # Imported in each worker: WhiteNoise indexes STATIC_ROOT when the
            # application is created, so collectstatic has run by then.
            "chengyun.wsgi:application",
            address=o["host"],
            port=o["port"],
            interface=Interfaces.WSGI,
            workers=workers,
            blocking_threads=threads,
            # One line a request on stdout; costs nothing measurable (discovery.json,
            # 2x2 on SQLite: 1588/1184/1672 req/s with it, 911/1587/1633 without).
            log_access=not o["no_access_log"],
            workers_kill_timeout=STOP_TIMEOUT_SECONDS,
        )
        db = settings.DATABASES["default"]
        self.stdout.write(f"Chengyun on http://{o['host']}:{o['port']}/ (granian, {workers} workers x {threads} "
                          f"threads, database {db['ENGINE'].rsplit('.', 1)[-1]}: {db['NAME']})")
        self.stdout.flush()
        server.serve()  # until SIGTERM or SIGINT: the workers finish their requests and stop
