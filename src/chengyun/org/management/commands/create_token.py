from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from chengyun.org.models import User
from chengyun.org.services import create_token


class Command(BaseCommand):
    help = gettext_noop("Create an API bearer token for a user and print it (shown only once).")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")

    def handle(self, *args, **o):
        user = User.objects.filter(username=o["username"]).first()
        if user is None:
            raise CommandError(_("No user named “%(name)s” (the users: the admin, or chengyun createsuperuser).")
                               % {"name": o["username"]})
        _token, key = create_token(user, o["name"])
        self.stdout.write(key)
