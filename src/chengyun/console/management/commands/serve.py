import multiprocessing
import os

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve Chengyun with gunicorn (a production server) on DATABASE_URL's database."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("CHENGYUN_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("CHENGYUN_PORT", "8000")))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("CHENGYUN_WORKERS", "0")) or None)
        parser.add_argument("--threads", type=int, default=int(os.environ.get("CHENGYUN_THREADS", "2")),
                            help="threads per worker process (default 2)")
        parser.add_argument("--no-collectstatic", action="store_true")

    def handle(self, *args, **o):
        from gunicorn.app.base import BaseApplication

        if not o["no_collectstatic"]:
            call_command("collectstatic", interactive=False, verbosity=0)
        workers = o["workers"] or min(2 * multiprocessing.cpu_count() + 1, 9)
        bind = f"{o['host']}:{o['port']}"
        threads = max(1, o["threads"])

        class App(BaseApplication):
            def load_config(self):
                self.cfg.set("bind", bind)
                self.cfg.set("workers", workers)
                self.cfg.set("threads", threads)
                self.cfg.set("accesslog", "-")
                self.cfg.set("timeout", 60)
                self.cfg.set("proc_name", "chengyun")

            def load(self):
                # Imported only now: WhiteNoise indexes STATIC_ROOT when the
                # application is created, so collectstatic must have run first.
                from chengyun.wsgi import application

                return application

        db = settings.DATABASES["default"]
        self.stdout.write(f"Chengyun on http://{bind}/ ({workers} workers x {threads} threads, database {db['ENGINE'].rsplit('.', 1)[-1]}: {db['NAME']})")
        App().run()
