import json

from django.core.management.base import BaseCommand
from django.utils.translation import gettext_noop


class Command(BaseCommand):
    help = gettext_noop("Run the vital-signs periodic jobs once, now: computed indicators, silent sensors, "
                         "anomaly baselines, pruning of old readings (all of them when no job is named).")

    def add_arguments(self, parser):
        parser.add_argument("--compute", action="store_true", help="compute the computed indicators")
        parser.add_argument("--missing", action="store_true", help="open warnings for silent sensors")
        parser.add_argument("--baselines", action="store_true", help="learn the anomaly baselines")
        parser.add_argument("--prune", action="store_true", help="drop readings and rollups past their keeping period")

    def handle(self, *args, **o):
        from chengyun.signs.compute import compute_indicators
        from chengyun.signs.rules import compute_baselines, prune, sweep_missing

        every = not any(o[k] for k in ("compute", "missing", "baselines", "prune"))
        jobs = [("compute", compute_indicators), ("missing", sweep_missing),
                ("baselines", lambda: {"indicators": compute_baselines()}), ("prune", prune)]
        for name, job in jobs:
            if every or o[name]:
                self.stdout.write(f"{name}: {json.dumps(job(), sort_keys=True)}")
