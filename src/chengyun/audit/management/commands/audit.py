from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext_noop

from chengyun.audit.models import AuditRecord
from chengyun.audit.services import verify_chain


class Command(BaseCommand):
    help = gettext_noop("Audit log tools: `audit verify` checks the hash chain and names any edited, deleted or "
                         "reordered record.")

    def add_arguments(self, parser):
        parser.add_argument("subcommand", choices=["verify", "tail"])
        parser.add_argument("-n", type=int, default=20, help="records to show with tail")

    def handle(self, *args, **o):
        if o["subcommand"] == "tail":
            for rec in reversed(AuditRecord.objects.order_by("-seq")[: o["n"]]):
                self.stdout.write(f"#{rec.seq} {rec.at.isoformat()} {rec.actor} {rec.action} {rec.object_type}:{rec.object_id}")
            return
        problems = list(verify_chain())
        total = AuditRecord.objects.count()
        if problems:
            for p in problems:
                self.stderr.write(str(p))
            raise CommandError(f"audit chain BROKEN: {len(problems)} problem(s) in {total} records")
        self.stdout.write(f"audit chain OK: {total} records verified")
