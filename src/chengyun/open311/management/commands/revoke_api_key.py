from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from chengyun.open311.models import ApiKey
from chengyun.open311.services import revoke_api_key


class Command(BaseCommand):
    help = gettext_noop("Revoke Open311 API keys: the key with this prefix, or the partner's key by its name "
                         "(when the partner has several active keys, as while a key is replaced: give the prefix, "
                         "or --all).")

    def add_arguments(self, parser):
        parser.add_argument("prefix_or_name")
        parser.add_argument("--all", action="store_true", help="revoke every active key of the partner")

    def handle(self, *args, prefix_or_name, **o):
        value = prefix_or_name.strip()
        keys = list(ApiKey.objects.filter(prefix=value, revoked_at__isnull=True))
        if not keys:
            keys = list(ApiKey.objects.filter(name=value, revoked_at__isnull=True).order_by("created_at"))
            if len(keys) > 1 and not o["all"]:
                # While a key is replaced, both work: revoking by name would cut the partner off.
                listed = "; ".join(f"{k.prefix} ({k.created_at:%Y-%m-%d %H:%M})" for k in keys)
                raise CommandError(_("%(name)s has %(n)s active keys: %(keys)s. Give the prefix of the one to "
                                     "revoke, or --all to revoke them all.")
                                   % {"name": value, "n": len(keys), "keys": listed})
        if not keys:
            raise CommandError(_("No active API key has the prefix or partner name “%(value)s”.") % {"value": value})
        for key in keys:
            revoke_api_key(key, by="cli")
            self.stdout.write(_("revoked %(prefix)s (%(name)s)") % {"prefix": key.prefix, "name": key.name})
