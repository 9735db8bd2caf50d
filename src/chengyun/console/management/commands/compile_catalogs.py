from django.core.management.base import BaseCommand
from django.utils.translation import gettext_noop

from chengyun.locale_build import compile_catalogs


class Command(BaseCommand):
    help = gettext_noop("Compile the zh-Hans and en translation catalogs (.po -> .mo) without GNU gettext.")

    def handle(self, *args, **o):
        done = compile_catalogs(force=True)
        self.stdout.write(f"compiled {len(done)} catalog(s)")
