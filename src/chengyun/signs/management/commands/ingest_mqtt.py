import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from chengyun.signs.mqtt import DEFAULT_TOPICS, Subscriber


class Command(BaseCommand):
    help = gettext_noop("Take in sensor readings from an MQTT broker (topics city/{sensor}/reading and "
                         "city/gateway/{id}/batch, see docs/sensors.md) in batches; a message is acknowledged only"
                         " once its readings are stored.")

    def add_arguments(self, parser):
        parser.add_argument("--url", default=None, help="broker, mqtt://host:port (default: settings.MQTT_URL)")
        parser.add_argument("--topic", action="append", dest="topics",
                            help="topic filter to subscribe to; repeat for several (default: %s)"
                                 % " and ".join(DEFAULT_TOPICS))
        parser.add_argument("--client-id", default="chengyun-ingest",
                            help="fixed client id: the broker keeps this session's unacknowledged messages")
        parser.add_argument("--batch", type=int, default=50_000,
                            help="readings per database write at most (--flush-ms keeps batches small at low rates)")
        parser.add_argument("--flush-ms", type=int, default=200, help="write a smaller batch after this long")
        parser.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
        parser.add_argument("--stats-every", type=float, default=10.0, help="seconds between stats lines")
        parser.add_argument("--no-rules", action="store_true", help="store only; do not evaluate warning rules")

    def handle(self, *args, **o):
        def report(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        try:
            sub = Subscriber(o["url"] or settings.MQTT_URL, topics=o["topics"] or DEFAULT_TOPICS,
                             client_id=o["client_id"], batch=o["batch"], flush_ms=o["flush_ms"], qos=o["qos"],
                             evaluate=not o["no_rules"], stats_every=o["stats_every"], report=report)
        except ValueError as e:
            raise CommandError(str(e)) from None
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_a: stop.set())
        sub.start()
        report(_("Taking in readings from %(host)s:%(port)s, topics %(topics)s, client id %(client)s "
                 "(stop with Ctrl-C or SIGTERM).") % {
            "host": sub.address.host, "port": sub.address.port, "topics": ", ".join(sub.topics),
            "client": sub.client_id})
        warned = False
        waited = 0.0
        while not stop.wait(0.5):
            waited += 0.5
            if not warned and waited >= 10 and not sub.ready.is_set():
                warned = True
                self.stderr.write(_("Still not connected to the MQTT broker at %(host)s:%(port)s; retrying.")
                                  % {"host": sub.address.host, "port": sub.address.port})
        sub.stop()
        report(_("Stopped; %(pending)d messages left unacknowledged with the broker.") % {"pending": sub.pending})
