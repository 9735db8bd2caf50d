"""Readings over MQTT: the topic scheme and the subscriber behind
``chengyun ingest-mqtt``.

Topics (see ``docs/sensors.md``)::

    city/{sensor_code}/reading       {"ts": ..., "value": ...}          one reading
    city/gateway/{gateway_id}/batch  [{"sensor", "ts", "value"}, ...]  a gateway's batch

Nothing acknowledged is lost. The subscriber keeps a persistent session
(MQTT 5, fixed client id, session expiry) and acknowledges by hand: a
message's PUBACK goes out only after the :func:`~chengyun.signs.ingest.ingest`
call holding its readings has committed. A database error leaves the batch
unacknowledged and it is retried with back-off; a broker outage is ridden
out by paho's reconnect, after which the broker redelivers what was never
acknowledged, and ``ingest`` stores a redelivered reading once (unique
(sensor, ts)). Payloads that can never succeed (not JSON, no value) are
counted as refused, logged, and acknowledged.

Threads: paho's network thread decodes messages into ``pending``; one
worker thread turns pending messages into ``ingest`` batches (``batch``
readings, or whatever arrived within ``flush_ms``) and then acknowledges
them. The worker has its own database connection and closes it when it ends.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from django.conf import settings
from django.db import connections
from django.utils import timezone
from django.utils.translation import gettext as _
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .ingest import IngestResult, ingest

log = logging.getLogger(__name__)

READING_TOPIC = "city/+/reading"
GATEWAY_TOPIC = "city/gateway/+/batch"
DEFAULT_TOPICS = (READING_TOPIC, GATEWAY_TOPIC)
# On stopping, one QoS 1 message to STOP_TOPIC_PREFIX/<client id>/stopped:
# nothing subscribes to it; the broker's answer confirms it has read every
# acknowledgement sent before (see Subscriber.stop).
STOP_TOPIC_PREFIX = "chengyun/ingest"


def stop_topic(client_id: str) -> str:
    """The stop topic of a client id (the characters a topic name may not hold,
    or that would make it two levels, replaced)."""
    return f"{STOP_TOPIC_PREFIX}/{re.sub(r'[+#/]', '_', client_id)}/stopped"


_STOP_TOPIC = re.compile(re.escape(STOP_TOPIC_PREFIX) + r"/[^/]+/stopped")


def is_stop_topic(topic: str) -> bool:
    return _STOP_TOPIC.fullmatch(topic) is not None

SESSION_EXPIRY_S = 7 * 86_400  # the broker keeps our subscriptions and unacknowledged messages this long
MAX_RECEIVE = 65_535  # MQTT 5 Receive Maximum: unacknowledged messages the broker may have out to us


def reading_topic(sensor_code: str) -> str:
    return f"city/{sensor_code}/reading"


def gateway_topic(gateway_id: str) -> str:
    return f"city/gateway/{gateway_id}/batch"


# --------------------------------------------------------------------------- the broker address


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None


def parse_url(url: str) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]``; ``mqtts://`` for TLS (port 8883)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ValueError(_("Not an MQTT address (mqtt://host:port): %(url)s") % {"url": url})
    tls = parts.scheme in ("mqtts", "ssl")
    return BrokerAddress(host=parts.hostname, port=parts.port or (8883 if tls else 1883), tls=tls,
                         username=unquote(parts.username) if parts.username else None,
                         password=unquote(parts.password) if parts.password else None)


# --------------------------------------------------------------------------- payloads


def decode(topic: str, payload: bytes, received_ms: int) -> tuple[list[tuple], list[str]]:
    """The readings a message holds as (sensor, ts, value) tuples, and the
    reasons for the parts refused here. A missing ``ts`` is the time of
    receipt. Values and times are checked by ``ingest``, not here."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == "city" and parts[1] == "gateway" and parts[3] == "batch":
        batch = True
    elif len(parts) == 3 and parts[0] == "city" and parts[2] == "reading" and parts[1]:
        batch = False
    else:
        return [], [_("Unknown topic.")]
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return [], [_("The payload is not JSON.")]
    if not batch:
        if not isinstance(data, dict):
            return [], [_("The payload is not a JSON object.")]
        if data.get("value") is None:
            return [], [_("The reading has no value.")]
        ts = data.get("ts")
        return [(parts[1], received_ms if ts is None else ts, data["value"])], []
    if not isinstance(data, list):
        return [], [_("A gateway batch is not a JSON array.")]
    rows, refused = [], []
    for item in data:
        if not isinstance(item, dict):
            refused.append(_("A reading in the batch is not a JSON object."))
        elif item.get("sensor") in (None, ""):
            refused.append(_("The reading names no sensor."))
        elif item.get("value") is None:
            refused.append(_("The reading has no value."))
        else:
            ts = item.get("ts")
            rows.append((str(item["sensor"]), received_ms if ts is None else ts, item["value"]))
    return rows, refused


# --------------------------------------------------------------------------- the subscriber


class _Message(NamedTuple):
    generation: int  # which connection brought it (see _Client.reconnect)
    mid: int
    qos: int
    rows: list
    arrived: float  # time.monotonic()


@dataclass
class Stats:
    messages: int = 0
    readings: int = 0
    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    batches: int = 0
    db_errors: int = 0
    connects: int = 0
    acked: int = 0
    warnings_opened: int = 0
    reasons: Counter = field(default_factory=Counter)


class _Client(mqtt.Client):
    """paho's client, counting connections. A PUBACK belongs to the connection
    that delivered the message: after a reconnect the broker resends what was
    not acknowledged under the same packet ids, and an acknowledgement left
    over from the old connection could free an id the broker then reuses for a
    message not stored yet. So each (re)connect starts a new generation under
    the acknowledgement lock, and only messages of the current generation are
    acknowledged; the redelivered copies are acknowledged when their batch
    commits. (The lock is taken in ``reconnect()``, not in a callback: paho
    runs callbacks under its callback mutex, which ``ack()`` may need.)"""

    def __init__(self, *args, ack_lock: threading.Lock, **kw):
        super().__init__(*args, **kw)
        self.ack_lock = ack_lock
        self.generation = 0

    def reconnect(self):
        with self.ack_lock:
            self.generation += 1
        return super().reconnect()


class Subscriber:
    """Subscribes to the reading topics and feeds ``ingest`` in batches.

    ``start()`` connects (retrying until the broker is there) and starts the
    worker; ``stop()`` flushes, acknowledges and disconnects; ``flush()`` runs
    one batch by hand and raises when the database does (nothing is
    acknowledged then)."""

    def __init__(self, url: str | None = None, *, topics: Iterable[str] = DEFAULT_TOPICS,
                 client_id: str = "chengyun-ingest", batch: int = 5000, flush_ms: int = 200, qos: int = 1,
                 evaluate: bool = True, stats_every: float = 10.0, report: Callable[[str], None] | None = None,
                 retry_delay: tuple[float, float] = (0.5, 30.0), reconnect_delay: tuple[float, float] = (0.5, 30.0),
                 keepalive: int = 30):
        self.address = parse_url(url or settings.MQTT_URL)
        self.topics = list(topics)
        self.client_id = client_id
        self.batch = max(1, int(batch))
        self.flush_s = max(0, flush_ms) / 1000
        self.qos = qos
        self.evaluate = evaluate
        self.stats_every = stats_every
        self.report = report
        self.retry_delay = retry_delay
        self.keepalive = keepalive
        self.stats = Stats()
        self._pending: deque[_Message] = deque()
        self._pending_rows = 0
        self._cond = threading.Condition()
        self._flush_lock = threading.Lock()
        self._stopping = threading.Event()
        self._gone = threading.Event()  # disconnected on purpose (stop)
        self.ready = threading.Event()  # connected and subscribed
        self._worker: threading.Thread | None = None
        self._last_report = (time.monotonic(), 0)
        self.client = _Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                              manual_ack=True, ack_lock=threading.Lock())
        if self.address.username:
            self.client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(*reconnect_delay)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    @property
    def source(self) -> str:
        return f"mqtt:{self.client_id}"

    @property
    def pending(self) -> int:
        """Messages received and not yet acknowledged."""
        with self._cond:
            return len(self._pending)

    # -- life cycle

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = min(MAX_RECEIVE, max(2 * self.batch, 1000))
        self.client.connect_async(self.address.host, self.address.port, keepalive=self.keepalive,
                                  clean_start=False, properties=props)
        self.client.loop_start()
        self._worker = threading.Thread(target=self._run, name=f"mqtt-ingest-{self.client_id}", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking messages, store and acknowledge what has arrived, disconnect.
        What arrives meanwhile is left unacknowledged: the broker keeps it for the
        next session."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)
        # The acknowledgements are queued in paho, and loop_stop() does not wait
        # for them to be written; even written, the broker may not have read them
        # when it is told of a next session under this client id (a restart), and
        # taking the session over it drops what it had not read: those readings
        # come again (stored once, but sent twice). One QoS 1 message is a round
        # trip: the broker answers it only after everything sent before it.
        try:
            confirmed = self._confirm_acknowledgements()
        except (RuntimeError, ValueError):  # paho: no connection, or the queue is full
            confirmed = False
        if not confirmed:  # the broker may redeliver some: stored once all the same
            log.warning("MQTT: the broker did not confirm the last acknowledgements before the disconnect")
        self.client.disconnect()
        self._gone.wait(5.0)
        self.client.loop_stop()

    def _confirm_acknowledgements(self, timeout: float = 5.0) -> bool:
        """One QoS 1 message on ``stop_topic(client id)``, answered by the broker."""
        if not self.client.is_connected():
            return False
        info = self.client.publish(stop_topic(self.client_id), b"", qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        info.wait_for_publish(timeout)
        return info.is_published()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self.ready.wait(timeout)

    # -- paho callbacks (network thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("MQTT broker %s:%s refused the connection: %s", self.address.host, self.address.port, reason_code)
            return
        self.stats.connects += 1
        log.info("connected to %s:%s as %s (session present: %s)", self.address.host, self.address.port,
                 self.client_id, flags.session_present)
        client.subscribe([(t, self.qos) for t in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("MQTT subscription refused: %s", ", ".join(failed))
        else:
            self.ready.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.ready.clear()
        if self._stopping.is_set():
            self._gone.set()
        if not self._stopping.is_set():
            log.warning("disconnected from MQTT broker %s:%s (%s); reconnecting", self.address.host,
                        self.address.port, reason_code)

    def _on_message(self, client, userdata, msg):
        if self._stopping.is_set():
            return  # not acknowledged: redelivered in the next session
        if is_stop_topic(msg.topic):  # a gateway's stop (under a "#" subscription): no readings
            rows, refused = [], []
        else:
            rows, refused = decode(msg.topic, msg.payload, int(time.time() * 1000))
        if refused:
            log.warning("MQTT message on %s refused: %s", msg.topic, "; ".join(sorted(set(refused))))
        with self._cond:
            if refused:
                self.stats.refused += len(refused)
                self.stats.reasons.update(refused)
            self.stats.messages += 1
            self.stats.readings += len(rows)
            self._pending.append(_Message(self.client.generation, msg.mid, msg.qos, rows, time.monotonic()))
            before = self._pending_rows
            self._pending_rows += len(rows)
            if before < self.batch <= self._pending_rows or len(self._pending) == 1:
                self._cond.notify()

    # -- batches (worker thread, or a caller of flush())

    def flush(self) -> IngestResult | None:
        """Store one batch of pending messages (up to ``batch`` readings) in one
        ``ingest`` call and acknowledge them once it has committed. Raises what
        ``ingest`` raises; the messages then stay pending, unacknowledged."""
        with self._flush_lock:
            with self._cond:
                take, n = 0, 0
                for m in self._pending:
                    if take and n + len(m.rows) > self.batch:
                        break
                    take += 1
                    n += len(m.rows)
                msgs = list(islice(self._pending, take))
            if not msgs:
                return None
            rows = [r for m in msgs for r in m.rows]
            result = ingest(rows, source=self.source, evaluate=self.evaluate) if rows else IngestResult()
            # Committed: from here on these messages may be acknowledged.
            reasons = [r.reason for r in result.refused]
            with self._cond:
                for _m in msgs:
                    self._pending.popleft()
                self._pending_rows -= len(rows)
                st = self.stats
                st.batches += 1
                st.stored += result.stored
                st.duplicates += result.duplicates
                st.warnings_opened += result.warnings_opened
                st.refused += len(reasons)
                st.reasons.update(reasons)
            if reasons:
                log.warning("MQTT batch: %d readings refused: %s", len(reasons),
                            "; ".join(f"{r} ({k})" for r, k in Counter(reasons).most_common(5)))
            self._ack(msgs)
            return result

    def _ack(self, msgs: list[_Message]) -> None:
        client = self.client
        with client.ack_lock:
            generation = client.generation
            for m in msgs:
                if m.qos and m.generation == generation:
                    client.ack(m.mid, m.qos)
                    self.stats.acked += 1

    def _flush_due(self) -> bool:
        if not self._pending:
            return False
        return self._pending_rows >= self.batch or time.monotonic() - self._pending[0].arrived >= self.flush_s

    def _run(self) -> None:
        delay = None
        try:
            while True:
                with self._cond:
                    if not self._stopping.is_set() and not self._flush_due():
                        wait = self.stats_every if self.report else 1.0
                        if self._pending:
                            wait = min(wait, max(0.0, self._pending[0].arrived + self.flush_s - time.monotonic()))
                        self._cond.wait(wait)
                    stopping = self._stopping.is_set()
                    due = self._flush_due() or (stopping and bool(self._pending))
                if due:
                    try:
                        self.flush()
                        delay = None
                    except Exception:
                        self.stats.db_errors += 1
                        connections["default"].close()  # a broken connection is opened afresh on the retry
                        if stopping:
                            log.exception("storing MQTT readings failed while stopping; %d messages stay with "
                                          "the broker for the next session", self.pending)
                            break
                        delay = min(self.retry_delay[1], delay * 2) if delay else self.retry_delay[0]
                        log.exception("storing MQTT readings failed; retrying the batch in %.1f s", delay)
                        self._stopping.wait(delay)
                        continue
                self._maybe_report()
                if stopping and not self._pending:
                    break
        finally:
            self._maybe_report(force=True)
            connections.close_all()

    # -- figures

    def stats_line(self, rate: float | None = None) -> str:
        st = self.stats
        return _("%(time)s MQTT: %(messages)d messages, %(readings)d readings, %(stored)d stored, "
                 "%(duplicates)d duplicates, %(refused)d refused, %(batches)d batches, %(errors)d database errors, "
                 "%(rate).0f messages/s") % {
            "time": timezone.localtime().strftime("%H:%M:%S"), "messages": st.messages, "readings": st.readings,
            "stored": st.stored, "duplicates": st.duplicates, "refused": st.refused, "batches": st.batches,
            "errors": st.db_errors, "rate": rate or 0.0,
        }

    def _maybe_report(self, force: bool = False) -> None:
        if self.report is None:
            return
        now = time.monotonic()
        since, count = self._last_report
        if not force and now - since < self.stats_every:
            return
        rate = (self.stats.messages - count) / (now - since) if now > since else 0.0
        self._last_report = (now, self.stats.messages)
        self.report(self.stats_line(rate))
