from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from chengyun.cases.errors import CaseError
from chengyun.open311.models import ApiKey
from chengyun.open311.services import create_api_key


class Command(BaseCommand):
    help = gettext_noop("Make an Open311 API key for a partner and print it (it is shown only this once).")

    def add_arguments(self, parser):
        parser.add_argument("name", help="the partner's name")
        parser.add_argument("--contact", default="", help="who to call about this partner's use of the API")

    def handle(self, *args, name, contact, **o):
        try:
            key, raw = create_api_key(name, by="cli", contact_note=contact)
        except CaseError as e:
            raise CommandError(e.message) from None
        self.stderr.write(_("API key for %(name)s (prefix %(prefix)s); it is not stored, copy it now:")
                          % {"name": key.name, "prefix": key.prefix})
        self.stdout.write(raw)
        older = ApiKey.objects.filter(name=key.name, revoked_at__isnull=True).exclude(pk=key.pk).order_by("created_at")
        for old in older:
            # A new key for a partner who has one: a replacement. Both work until the old one is revoked.
            self.stderr.write(_("%(name)s also has the key %(prefix)s (made %(at)s), which still works. Once the "
                                "partner uses the new key: chengyun revoke-api-key %(prefix)s")
                              % {"name": key.name, "prefix": old.prefix, "at": f"{timezone.localtime(old.created_at):%Y-%m-%d %H:%M}"})
