from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from chengyun.signs.services import RegistryImportError, import_sensors


class Command(BaseCommand):
    help = (gettext_noop("Create or update sensors (and their indicators) from a CSV file, by code.")
            + " Columns: code, kind (required), name, lon, lat, interval_s, department, unit; optional "
              "rules warn_low, warn_high, alarm_low, alarm_high, hysteresis, rate_limit, "
              "missing_intervals, flatline_minutes, flatline_tolerance, anomaly. One transaction: any "
              "error and nothing is imported. See docs/sensors.md.")

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, *args, **options):
        try:
            result = import_sensors(options["file"])
        except RegistryImportError as exc:
            for line in exc.errors:
                self.stderr.write(line)
            raise CommandError(_("%(file)s: nothing imported (%(n)s errors)")
                               % {"file": options["file"], "n": len(exc.errors)}) from None
        self.stdout.write(result.summary())
