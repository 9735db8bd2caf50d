from django.core.management.base import BaseCommand

from chengyun.cases.services import sweep_deadlines


class Command(BaseCommand):
    help = "Flag near-due and overdue cases and escalate them up the area tree, once, now."

    def handle(self, *args, **o):
        counts = sweep_deadlines()
        self.stdout.write(", ".join(f"{k}: {v}" for k, v in counts.items()))
