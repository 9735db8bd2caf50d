from django.core.management import call_command
from django.core.management.base import BaseCommand

from chengyun.cases.tasks import schedule_sweep
from chengyun.signs.tasks import schedule_signs


class Command(BaseCommand):
    help = "Run the background worker: deadline sweeps (督办 escalation) and other queued tasks."

    def add_arguments(self, parser):
        parser.add_argument("--batch", action="store_true", help="run what is due, then exit")

    def handle(self, *args, **o):
        schedule_sweep()
        schedule_signs()
        args = ["--queue-name", "*", "--no-reload"]
        if o["batch"]:
            args.append("--batch")
        call_command("db_worker", *args)
