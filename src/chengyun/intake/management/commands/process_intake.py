import time

from django.core.management.base import BaseCommand
from django.utils.translation import gettext_noop

from chengyun.intake import received


class Command(BaseCommand):
    help = (gettext_noop("Run the intake pipeline over reports that Open311 and /api/v1/reports have received "
                         "(classify, duplicates, case, routing, cluster warnings).")
            + " `chengyun worker` does this too.")

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="process what is waiting now, then exit")
        parser.add_argument("--batch", type=int, default=received.LIVE_BATCH,
                            help=f"reports per transaction (default {received.LIVE_BATCH})")

    def handle(self, *args, **o):
        if o["batch"] < 1:
            self.stderr.write("--batch must be at least 1")
            raise SystemExit(2)
        if not o["once"]:
            self.stdout.write(f"processing received reports ({received.waiting()} waiting); Ctrl+C stops")
            try:
                received.run_forever(limit=o["batch"])
            except KeyboardInterrupt:
                pass
            return
        started, total = time.perf_counter(), None
        while True:
            counts = received.process_received(limit=o["batch"])
            if total is None:
                total = counts
            else:
                total.add(counts)
            if counts.rows < o["batch"]:
                break
        seconds = time.perf_counter() - started
        d = total.as_dict()
        self.stdout.write(
            f"processed {d['rows'] - d['already']} received reports in {seconds:.1f} s: {d['cases']} new cases "
            f"({d['routed']} routed), {d['attached']} attached to open cases, {d['asked']} duplicate questions; "
            f"{received.waiting()} waiting")
