from django.core.management.base import BaseCommand
from django.utils.translation import gettext_noop

from chengyun.demo.loader import DEMO_PASSWORD, DEMO_USERS, load_all


class Command(BaseCommand):
    help = (gettext_noop("Load the demo city (Shanghai): areas, departments, categories, demo logins, generated "
                         "cases and generated sensors with their readings.")
            + " Idempotent.")

    def add_arguments(self, parser):
        parser.add_argument("--cases", type=int, default=3000, help="generated cases over the last 90 days (0: none)")
        parser.add_argument("--sensors", type=int, default=300, help="generated sensors (0: none)")
        parser.add_argument("--sensor-days", type=int, default=30, help="days of generated readings per sensor")
        parser.add_argument("--seed", type=int, default=20261127)

    def handle(self, *args, **o):
        load_all(cases=o["cases"], seed=o["seed"], sensors=o["sensors"], sensor_days=o["sensor_days"],
                 log=self.stdout.write, background=True)
        self.stdout.write("\nDemo logins (password for all: %s):" % DEMO_PASSWORD)
        for username, display, role, _area, _dept in DEMO_USERS:
            self.stdout.write(f"  {username:<20} {role.label:<14} {display}")
