from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.utils.translation import gettext as _

from chengyun.open311.models import ApiKey
from chengyun.open311.services import revoke_api_key


class Command(BaseCommand):
    help = "Revoke Open311 API keys: the key with this prefix, or every active key of the partner with this name."

    def add_arguments(self, parser):
        parser.add_argument("prefix_or_name")

    def handle(self, *args, prefix_or_name, **o):
        value = prefix_or_name.strip()
        keys = list(ApiKey.objects.filter(Q(prefix=value) | Q(name=value), revoked_at__isnull=True))
        if not keys:
            raise CommandError(_("No active API key has the prefix or partner name “%(value)s”.") % {"value": value})
        for key in keys:
            revoke_api_key(key, by="cli")
            self.stdout.write(_("revoked %(prefix)s (%(name)s)") % {"prefix": key.prefix, "name": key.name})
