"""The MQTT path against a real Mosquitto: a private broker per test on a free
loopback port with its own persistence directory (the system broker on 1883
is never touched). The subscriber runs in its own threads with its own
database connection, hence ``transaction=True``."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from django.db import OperationalError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from chengyun.signs import mqtt as signs_mqtt
from chengyun.signs.ingest import ingest
from chengyun.signs.models import Reading, Rollup, Sensor
from chengyun.signs.mqtt import Subscriber, gateway_topic, reading_topic

from ..factories import database_url
from .conftest import make_sensor

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)

pytestmark = [
    pytest.mark.skipif(MOSQUITTO is None, reason="the mosquitto broker binary is not installed (apt install mosquitto)"),
    pytest.mark.django_db(transaction=True),
]

MIN = 60_000
WAIT = 15.0  # seconds: an upper bound for anything to happen, never a measured time


# --------------------------------------------------------------------------- helpers


def wait_for(check, timeout: float = WAIT, every: float = 0.02):
    """Poll ``check()`` until it is truthy; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def settled(sub, quiet: float = 1.0, timeout: float = WAIT) -> bool:
    """Nothing pending, and no message arrived for ``quiet`` seconds: after a
    broker restart the broker resends unacknowledged messages a little later,
    so "nothing pending" alone can be a moment between two deliveries."""
    deadline = time.monotonic() + timeout
    seen, since = sub.stats.messages, time.monotonic()
    while time.monotonic() < deadline:
        if sub.stats.messages != seen:
            seen, since = sub.stats.messages, time.monotonic()
        elif sub.pending == 0 and time.monotonic() - since >= quiet:
            return True
        time.sleep(0.05)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """A private broker: ``listener PORT 127.0.0.1``, anonymous, persistence in its own directory."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text("\n".join([
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {directory}/",
            "max_queued_messages 100000",
            f"user {getpass.getuser()}",  # as root, mosquitto would switch to a user who cannot write here
            "",
        ]))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.directory / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def listening():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                assert self.proc.poll() is None, (self.directory / "mosquitto.log").read_text()
                return False

        assert wait_for(listening, 5.0), "mosquitto did not start listening"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def subscriber(broker):
    """Start subscribers on the private broker; all are stopped at the end."""
    started = []

    def start(**kw) -> Subscriber:
        kw.setdefault("client_id", f"ingest-{uuid.uuid4().hex[:8]}")
        kw.setdefault("flush_ms", 50)
        kw.setdefault("retry_delay", (0.05, 0.2))
        kw.setdefault("reconnect_delay", (0.1, 0.5))
        sub = Subscriber(broker.url, **kw)
        started.append(sub)
        sub.start()
        assert sub.wait_ready(WAIT), "the subscriber did not connect and subscribe"
        return sub

    yield start
    for sub in started:
        sub.stop(timeout=10)


class Publisher:
    """A plain paho client publishing at QoS 1 that reconnects by itself."""

    def __init__(self, broker: Mosquitto, *, client_id: str | None = None):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv311, clean_session=False)
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert wait_for(self.client.is_connected), "the publisher did not connect"

    def send(self, messages: list[tuple[str, bytes | str]], qos: int = 1) -> None:
        """Publish and wait for every PUBACK."""
        infos = [self.client.publish(topic, payload, qos=qos) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(WAIT)
            assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker):
    pubs = []

    def make(**kw) -> Publisher:
        pubs.append(Publisher(broker, **kw))
        return pubs[-1]

    yield make
    for p in pubs:
        p.close()


class Session:
    """A bare MQTT 5 consumer under a given client id with a persistent session
    that never acknowledges: what it is given stays in flight with the broker."""

    def __init__(self, broker: Mosquitto, client_id: str, topics=signs_mqtt.DEFAULT_TOPICS):
        self.received: list[mqtt.MQTTMessage] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                                  manual_ack=True)
        self.client.on_message = lambda c, u, m: self.received.append(m)
        self.subscribed = False
        self.client.on_subscribe = lambda *a: setattr(self, "subscribed", True)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        props.ReceiveMaximum = 1000
        self.client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in topics])
        assert wait_for(lambda: self.subscribed)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def assert_all_acknowledged(broker: Mosquitto, client_id: str, pub: Publisher) -> None:
    """Nothing is left in flight for ``client_id``: after a marker is published,
    the next session under that id is given the marker and nothing before it."""
    marker = f"marker-{uuid.uuid4().hex[:6]}"
    pub.send([(reading_topic(marker), json.dumps({"value": 1}))])
    after = Session(broker, client_id)
    try:
        assert wait_for(lambda: any(m.topic == reading_topic(marker) for m in after.received))
        assert [m.topic for m in after.received] == [reading_topic(marker)]
    finally:
        after.close()


def base_ms() -> int:
    return (int(time.time() * 1000) // MIN) * MIN - 90 * MIN


def value(i: int) -> float:
    return round(0.25 + (i % 20) / 100, 2)  # inside the 0.2-0.5 band: no warnings


def reading_msg(code: str, ts: int, v) -> tuple[str, str]:
    return reading_topic(code), json.dumps({"ts": ts, "value": v})


def stored(code: str = "WP-0001") -> dict[int, float]:
    return dict(Reading.objects.filter(sensor__code=code).values_list("ts", "value"))


def count(n: int):
    return lambda: Reading.objects.count() >= n


def expected_rollups(rows: list[tuple[int, float]], size: int) -> dict[int, tuple[int, float, float, float]]:
    buckets = defaultdict(list)
    for ts, v in rows:
        buckets[ts // size * size].append(v)
    return {b: (len(vs), min(vs), max(vs), round(sum(vs), 6)) for b, vs in buckets.items()}


def rollups(sensor: Sensor, resolution: str) -> dict[int, tuple[int, float, float, float]]:
    return {r.bucket: (r.count, r.min, r.max, round(r.sum, 6))
            for r in Rollup.objects.filter(sensor=sensor, resolution=resolution)}


# --------------------------------------------------------------------------- tests


def test_single_reading_messages_are_all_stored_with_their_rollups(pressure, subscriber, publisher):
    Sensor.objects.filter(pk=pressure.pk).update(interval_s=10)  # reports often enough for minute rollups too
    sub = subscriber()
    t0 = base_ms()
    rows = [(t0 + i * 1000, value(i)) for i in range(500)]
    publisher().send([reading_msg("WP-0001", ts, v) for ts, v in rows])

    assert wait_for(count(500)), Reading.objects.count()
    assert stored() == dict(rows)
    assert rollups(pressure, "m") == expected_rollups(rows, MIN)
    assert rollups(pressure, "h") == expected_rollups(rows, 60 * MIN)
    assert wait_for(lambda: sub.stats.acked == 500)
    assert (sub.stats.messages, sub.stats.stored, sub.stats.duplicates, sub.stats.refused) == (500, 500, 0, 0)
    assert sub.stats.batches < 500  # batched, not one write per message
    assert Sensor.objects.get(code="WP-0001").last_ms == rows[-1][0]


def test_a_gateway_batch_is_stored_whole(pressure, pressure_kind, subscriber, publisher):
    make_sensor(code="WP-0002", kind=pressure_kind, at="100102001")
    sub = subscriber()
    t0 = base_ms()
    batch = [{"sensor": code, "ts": t0 + i * 1000, "value": value(i)} for i in range(150) for code in ("WP-0001", "WP-0002")]
    publisher().send([(gateway_topic("gw-7"), json.dumps(batch[:200])), (gateway_topic("gw-7"), json.dumps(batch[200:]))])

    assert wait_for(count(300)), Reading.objects.count()
    for code in ("WP-0001", "WP-0002"):
        assert stored(code) == {t0 + i * 1000: value(i) for i in range(150)}
    # The counters are updated after the batch commits (readings can be seen a moment before): wait for the acks.
    assert wait_for(lambda: sub.stats.acked == 2)
    assert (sub.stats.messages, sub.stats.readings, sub.stats.stored) == (2, 300, 300)


def test_the_same_reading_twice_is_stored_once(pressure, subscriber, publisher):
    sub = subscriber()
    t0 = base_ms()
    msg = reading_msg("WP-0001", t0, 0.31)
    pub = publisher()
    pub.send([msg, msg])
    pub.send([msg, reading_msg("WP-0001", t0 + 1000, 0.32)])

    assert wait_for(lambda: sub.stats.messages == 4 and sub.pending == 0)
    assert stored() == {t0: 0.31, t0 + 1000: 0.32}
    assert (sub.stats.stored, sub.stats.duplicates) == (2, 2)
    assert Rollup.objects.get(resolution="h").count == 2


def test_redelivered_messages_are_stored_once_and_acknowledged(broker, pressure, subscriber, publisher):
    """A first consumer stores a batch and dies before acknowledging it; the
    broker redelivers the batch to the next session under the same client id."""
    client_id = "ingest-redelivery"
    first = Session(broker, client_id)
    t0 = base_ms()
    rows = [(t0 + i * 1000, value(i)) for i in range(50)]
    pub = publisher()
    pub.send([reading_msg("WP-0001", ts, v) for ts, v in rows])
    assert wait_for(lambda: len(first.received) == 50)
    ingest([("WP-0001", ts, v) for ts, v in rows])  # committed ...
    first.close()  # ... and gone without a single PUBACK

    sub = subscriber(client_id=client_id)
    assert wait_for(lambda: sub.stats.acked == 50)
    assert (sub.stats.messages, sub.stats.stored, sub.stats.duplicates) == (50, 0, 50)
    assert stored() == dict(rows)
    sub.stop()
    assert_all_acknowledged(broker, client_id, pub)  # acknowledged means gone


def test_broker_restart_mid_stream_loses_nothing_that_was_acknowledged(broker, pressure, subscriber, publisher):
    sub = subscriber(flush_ms=300, batch=100_000)  # holds messages unacknowledged for a while
    pub = publisher(client_id="pub-restart")
    t0 = base_ms()
    rows = [(t0 + i * 1000, value(i)) for i in range(600)]
    pub.send([reading_msg("WP-0001", ts, v) for ts, v in rows[:300]])  # every one PUBACKed by the broker

    broker.stop()  # SIGTERM: the broker saves its sessions and in-flight messages
    assert wait_for(lambda: not sub.ready.is_set() and not pub.client.is_connected())
    broker.start()  # same port, same persistence directory

    assert wait_for(pub.client.is_connected) and sub.wait_ready(WAIT)
    pub.send([reading_msg("WP-0001", ts, v) for ts, v in rows[300:]])

    assert wait_for(count(600)), Reading.objects.count()
    assert settled(sub)
    assert stored() == dict(rows)
    assert rollups(pressure, "h") == expected_rollups(rows, 60 * MIN)  # duplicates did not count twice
    assert sub.stats.connects >= 2
    sub.stop()
    assert_all_acknowledged(broker, sub.client_id, pub)


def test_a_failing_database_write_is_retried_and_nothing_is_acknowledged_before(broker, pressure, subscriber,
                                                                               publisher, monkeypatch):
    events = []
    real_ingest = signs_mqtt.ingest

    def flaky_ingest(rows, **kw):
        if not any(e[0] == "failed" for e in events):
            events.append(("failed", len(rows)))
            raise OperationalError("the database is away (test)")
        result = real_ingest(rows, **kw)
        events.append(("stored", result.stored))
        return result

    monkeypatch.setattr(signs_mqtt, "ingest", flaky_ingest)
    sub = subscriber(flush_ms=100)
    real_ack = sub.client.ack
    monkeypatch.setattr(sub.client, "ack", lambda mid, qos: (events.append(("ack", mid)), real_ack(mid, qos))[1])

    t0 = base_ms()
    rows = [(t0 + i * 1000, value(i)) for i in range(100)]
    pub = publisher()
    pub.send([reading_msg("WP-0001", ts, v) for ts, v in rows])

    assert wait_for(count(100)), Reading.objects.count()
    assert wait_for(lambda: sub.stats.acked == 100)
    assert stored() == dict(rows)
    kinds = [e[0] for e in events]
    assert kinds[0] == "failed" and kinds[1] == "stored"  # the failed batch came back first: no ack in between
    assert sum(e[1] for e in events if e[0] == "stored") == 100
    assert sub.stats.db_errors == 1
    sub.stop()
    assert_all_acknowledged(broker, sub.client_id, pub)


def test_readings_that_could_not_be_stored_stay_with_the_broker_until_they_are(broker, pressure, subscriber,
                                                                               publisher, monkeypatch):
    """The database is down for the whole life of one ingester: it stops
    without acknowledging anything, and the next one under the same client id
    is given every message again and stores it."""
    def no_database(rows, **kw):
        raise OperationalError("the database is away (test)")

    monkeypatch.setattr(signs_mqtt, "ingest", no_database)
    client_id = "ingest-db-down"
    down = subscriber(client_id=client_id)
    t0 = base_ms()
    rows = [(t0 + i * 1000, value(i)) for i in range(50)]
    pub = publisher()
    pub.send([reading_msg("WP-0001", ts, v) for ts, v in rows])
    assert wait_for(lambda: down.stats.messages == 50 and down.stats.db_errors >= 1)
    down.stop()
    assert (down.stats.stored, down.stats.acked, down.pending) == (0, 0, 50)

    monkeypatch.undo()
    up = subscriber(client_id=client_id)
    assert wait_for(lambda: up.stats.acked == 50)
    assert stored() == dict(rows)
    assert up.stats.stored == 50


def test_malformed_payloads_are_refused_and_counted_the_rest_stored(pressure, subscriber, publisher):
    sub = subscriber()
    t0 = base_ms()
    good = [reading_msg("WP-0001", t0 + i * 1000, value(i)) for i in range(10)]
    bad = [
        (reading_topic("WP-0001"), "not json"),
        (reading_topic("WP-0001"), json.dumps({"ts": t0})),  # no value
        (reading_topic("WP-0001"), json.dumps([0.3])),  # not an object
        reading_msg("WP-0001", t0 + 50_000, "abc"),  # not a number (refused by ingest)
        reading_msg("NO-SUCH-SENSOR", t0, 0.3),  # unknown sensor (refused by ingest)
        (gateway_topic("gw-1"), json.dumps({"sensor": "WP-0001"})),  # a batch must be an array
        (gateway_topic("gw-1"), json.dumps([{"sensor": "WP-0001", "ts": t0 + 60_000, "value": 0.3},
                                            "junk", {"ts": t0, "value": 1}])),  # one good reading, two refused
    ]
    publisher().send(good[:5] + bad + good[5:])

    assert wait_for(lambda: sub.stats.acked == len(good) + len(bad))  # refused ones too: they can never succeed
    assert sub.stats.messages == len(good) + len(bad)
    assert len(stored()) == 11
    assert sub.stats.refused == 8
    reasons = sub.stats.reasons
    assert reasons["The payload is not JSON."] == 1
    assert reasons["The reading has no value."] == 1
    assert reasons["The value is not a number."] == 1
    assert reasons["Unknown sensor."] == 1


def test_a_reading_without_ts_is_stamped_on_receipt(pressure, subscriber, publisher):
    sub = subscriber()
    before = int(time.time() * 1000)
    publisher().send([(reading_topic("WP-0001"), json.dumps({"value": 0.33}))])
    assert wait_for(lambda: sub.stats.stored == 1)
    ((ts, v),) = stored().items()
    assert v == 0.33 and before <= ts <= int(time.time() * 1000)


def test_flush_by_hand_stores_and_acknowledges_what_is_pending(pressure, subscriber, publisher):
    sub = subscriber(flush_ms=600_000, batch=1_000_000)  # the worker would wait ten minutes
    t0 = base_ms()
    publisher().send([reading_msg("WP-0001", t0 + i * 1000, value(i)) for i in range(20)])
    assert wait_for(lambda: sub.pending == 20)
    assert Reading.objects.count() == 0

    result = sub.flush()
    assert (result.received, result.stored) == (20, 20)
    assert (sub.pending, sub.stats.acked, Reading.objects.count()) == (0, 20, 20)
    assert sub.flush() is None


# --------------------------------------------------------------------------- the command line


@pytest.mark.slow
def test_cli_takes_in_what_was_queued_while_it_was_down_and_stops_on_sigterm(broker, pressure, publisher, tmp_path):
    # The session exists (as after an earlier run): readings published while
    # no ingester runs wait with the broker.
    Session(broker, "chengyun-ingest-cli").close()
    t0 = base_ms()
    publisher().send([reading_msg("WP-0001", t0 + i * 1000, value(i)) for i in range(120)])

    env = {**os.environ, "DATABASE_URL": database_url(), "CHENGYUN_DATA_DIR": str(tmp_path / "data")}
    exe = str(Path(sys.executable).with_name("chengyun"))
    proc = subprocess.Popen([exe, "ingest-mqtt", "--url", broker.url, "--client-id", "chengyun-ingest-cli",
                             "--flush-ms", "50", "--stats-every", "0.5"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(count(120), timeout=30), Reading.objects.count()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert stored() == {t0 + i * 1000: value(i) for i in range(120)}
    assert "120" in out  # the stats line (in the city's language) counts them


def test_stopping_confirms_with_the_broker_and_another_gateways_stop_is_no_reading(broker, subscriber, publisher):
    """stop() ends with a QoS 1 round trip on chengyun/ingest/<id>/stopped (the
    broker has read every acknowledgement once it answers); a gateway that
    subscribes to everything takes such a message as nothing, not as a refusal."""
    watcher = Session(broker, f"watch-{uuid.uuid4().hex[:6]}", topics=[f"{signs_mqtt.STOP_TOPIC_PREFIX}/+/stopped"])
    try:
        first = subscriber()
        first.stop()
        assert wait_for(lambda: [m.topic for m in watcher.received] == [
            f"{signs_mqtt.STOP_TOPIC_PREFIX}/{first.client_id}/stopped"])
    finally:
        watcher.close()

    assert signs_mqtt.stop_topic("site/a+b#") == f"{signs_mqtt.STOP_TOPIC_PREFIX}/site_a_b_/stopped"
    assert not signs_mqtt.is_stop_topic(f"{signs_mqtt.STOP_TOPIC_PREFIX}/x/y/stopped")
    everything = subscriber(topics=["chengyun/ingest/#"])
    publisher().send([(f"{signs_mqtt.STOP_TOPIC_PREFIX}/other-gateway/stopped", b"")])
    assert wait_for(lambda: everything.stats.acked == 1)
    assert (everything.stats.messages, everything.stats.readings, everything.stats.refused) == (1, 0, 0)
