from django.core.management.base import BaseCommand
from django.utils.translation import gettext_noop

from chengyun.cases.services import sweep_deadlines


class Command(BaseCommand):
    help = gettext_noop("Flag near-due and overdue cases, and cases waiting past their dispatch time, and "
                         "escalate them up the area tree, once, now.")

    def handle(self, *args, **o):
        counts = sweep_deadlines()
        self.stdout.write(", ".join(f"{k}: {v}" for k, v in counts.items()))
