import threading

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils.translation import gettext_noop

from chengyun.cases.tasks import schedule_sweep
from chengyun.intake import received
from chengyun.intake.tasks import schedule_notifications
from chengyun.signs.tasks import schedule_signs


class Command(BaseCommand):
    help = gettext_noop("Run the background worker: the intake pipeline over reports received by machine "
                         "channels, deadline sweeps (督办 escalation), vital-sign jobs, messages to reporters and "
                         "other queued tasks.")

    def add_arguments(self, parser):
        parser.add_argument("--batch", action="store_true", help="run what is due (and what was received), then exit")
        parser.add_argument("--no-intake", action="store_true",
                            help="leave received reports to another process (chengyun process-intake)")

    def handle(self, *args, **o):
        schedule_sweep()
        schedule_signs()
        schedule_notifications()  # what is waiting from before (a stop, a mail server that was down)
        args = ["--queue-name", "*", "--no-reload"]
        if o["batch"]:
            if not o["no_intake"]:
                while received.process_received().rows:
                    pass
            args.append("--batch")
            call_command("db_worker", *args)
            return
        stop = threading.Event()
        intake = None
        if not o["no_intake"]:
            intake = threading.Thread(target=received.run_forever, args=(stop,), name="intake", daemon=True)
            intake.start()
        try:
            call_command("db_worker", *args)
        finally:
            stop.set()
            if intake is not None:
                intake.join(timeout=10)
