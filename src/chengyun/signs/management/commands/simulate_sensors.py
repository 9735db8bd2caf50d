"""``chengyun simulate-sensors``: live generated readings for the demo.

Each sensor continues from its last stored value towards a daily cycle inside
its indicator's band, with noise scaled to the band (an Ornstein-Uhlenbeck
walk: it moves by about as much in a minute whether it reports every second
or every ten minutes). ``--incident CODE`` drives one sensor out of its band
for a while and lets it come back; ``--stuck CODE`` makes one repeat its
value, like a jammed gauge (the flat-line rule's warning). The readings go out over MQTT (one message
per reading, or gateway batches) or to the HTTP batch API. Only sensors marked
as generated are simulated unless ``--include-real`` is given: made-up values
must never land on a real device's series by accident.

A sensor of the demo city whose stored series follows the demo's model of its
kind (``chengyun.demo.sensors``: the same level, daily and weekly shape and
noise, from its code) goes on along that model instead, so the live readings
look like the thirty days before them. The walk inside the band had its own
centre, cycle and a noise several times the history's, and the anomaly rules
rightly saw that as a change: in a trial, eleven warnings nobody planted
within five minutes, burying the planted incident. A warning still going on
when the simulator starts goes on: a silent sensor is not simulated, a stuck
one repeats its value, one in an excursion stays there.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from chengyun.signs.models import Rule, Sensor, Warning
from chengyun.signs.mqtt import gateway_topic, parse_url, reading_topic

TAU_MIN = 30.0  # minutes for a sensor to drift most of the way back to its cycle
INCIDENT_TAU_MIN = 0.5  # how fast an incident takes hold
NOISE = 0.12  # spread of the noise, as a share of half the band


# --------------------------------------------------------------------------- values


@dataclass
class SimSensor:
    code: str
    lo: float  # the normal band the values stay in
    hi: float
    margin: float  # kept from the band's edges (at least the hysteresis)
    out: float  # where an incident takes the value: beyond the alarm band
    rate_limit: float | None  # per minute
    interval_s: int
    value: float
    last_ms: int | None
    phase: float  # radians: sensors do not all peak at the same minute
    model: tuple[str, dict] | None = None  # (kind, parameters) of the demo model it follows, if any
    hold: bool = False  # in an excursion still going on: stays where it is

    @property
    def centre(self) -> float:
        return (self.lo + self.hi) / 2

    @property
    def half(self) -> float:
        return (self.hi - self.lo) / 2


def ongoing_warnings(sensors) -> dict[str, set[str]]:
    """The rules of each sensor's warnings still going on (not ended), by sensor code."""
    out: dict[str, set[str]] = {}
    rows = (Warning.objects.filter(ended_ms__isnull=True, indicator__sensor__in=sensors)
            .values_list("indicator__sensor__code", "rule"))
    for code, rule in rows:
        out.setdefault(code, set()).add(rule)
    return out


def sim_sensor(sensor: Sensor, rng: random.Random, *, hold: bool = False) -> SimSensor:
    """The band to simulate in, from the sensor's indicator (or its last value).
    ``hold``: the sensor is in an excursion that is still going on (the demo's burst
    main): it stays where it is, with a little noise, rather than walking back."""
    ind = getattr(sensor, "indicator", None)
    get = (lambda name: getattr(ind, name)) if ind is not None else (lambda name: None)
    lo = get("warn_low") if get("warn_low") is not None else get("alarm_low")
    hi = get("warn_high") if get("warn_high") is not None else get("alarm_high")
    last = sensor.last_value
    if lo is None and hi is None:
        centre = last if last is not None else 0.0
        half = max(abs(centre) * 0.1, 1.0)
        lo, hi = centre - half, centre + half
    elif lo is None:
        lo = hi * 0.2 if hi > 0 else hi - max(abs(hi), 1.0)
    elif hi is None:
        hi = lo * 2 if lo > 0 else lo + max(abs(lo), 1.0)
    width = hi - lo
    margin = max(get("hysteresis") or 0.0, 0.03 * width)
    top = get("alarm_high") if get("alarm_high") is not None else get("warn_high")
    bottom = get("alarm_low") if get("alarm_low") is not None else get("warn_low")
    if top is not None:
        out = top + 0.3 * width
    elif bottom is not None:
        out = bottom - 0.3 * width
    else:
        out = hi + 2 * width
    start = last if last is not None else (lo + hi) / 2
    if hold:
        out = start  # where the excursion stands: it stays there
    return SimSensor(code=sensor.code, lo=lo, hi=hi, margin=margin, out=out, rate_limit=get("rate_limit"),
                     interval_s=sensor.interval_s or 300, value=start, last_ms=sensor.last_ms,
                     phase=rng.uniform(-0.5, 0.5), model=None if hold else _demo_model(sensor), hold=hold)


MODEL_FIT_NOISES = 6  # the last stored value within this many noise widths of the model: it follows it


def _demo_model(sensor: Sensor) -> tuple[str, dict] | None:
    """The demo's model of the sensor's kind, if the sensor is generated and its last
    stored value is what that model gives for then (a sensor in a planted incident,
    or one the demo did not make, walks inside its band instead)."""
    import numpy as np

    from chengyun.demo.sensors import normal, params_for

    kind = sensor.kind.code
    if not sensor.generated or sensor.last_value is None or sensor.last_ms is None:
        return None
    params = params_for(kind, sensor.code)
    if not params.get("noise"):
        return None  # not a kind the demo models
    expected = float(normal(kind, params, np.array([sensor.last_ms]), _offset_ms(sensor.last_ms))[0])
    return (kind, params) if abs(sensor.last_value - expected) <= _spread(kind, params, expected) else None


def _spread(kind: str, params: dict, expected: float) -> float:
    """How far from the model a value of its own may be (``MODEL_FIT_NOISES`` noise widths;
    PM2.5's noise is a share of its level plus one µg/m³, as ``demo.sensors.noisy`` makes it)."""
    width = params["noise"] * abs(expected) + 1.0 if kind == "pm25" else params["noise"]
    return MODEL_FIT_NOISES * width


def _offset_ms(ts: int) -> int:
    """The city's offset from UTC at ``ts`` (ms), as the demo's model counts local time."""
    offset = datetime.fromtimestamp(ts / 1000, ZoneInfo(settings.TIME_ZONE)).utcoffset()
    return int(offset.total_seconds() * 1000) if offset else 0


class ValueGenerator:
    """The next value of each sensor; round-robin over the sensors."""

    def __init__(self, sensors: list[SimSensor], *, seed: int | None = None, tz: ZoneInfo | None = None):
        self.sensors = sensors
        self.rng = random.Random(seed)
        self._np_rng = None  # numpy's, for the demo model's noise: made once, from ``rng``
        self.tz = tz or ZoneInfo(settings.TIME_ZONE)
        self.incidents: dict[str, tuple[int, int]] = {}
        self.stuck: set[str] = set()
        self._next = 0

    def incident(self, code: str, start_ms: int, end_ms: int) -> None:
        self.incidents[code] = (start_ms, end_ms)

    def in_incident(self, s: SimSensor, ts: int) -> bool:
        span = self.incidents.get(s.code)
        return span is not None and span[0] <= ts < span[1]

    def value(self, s: SimSensor, ts: int) -> float:
        """Move ``s`` to time ``ts`` (ms) and return its value there."""
        dt = (ts - s.last_ms) / 60_000 if s.last_ms is not None and ts > s.last_ms else s.interval_s / 60
        here = datetime.fromtimestamp(ts / 1000, self.tz)
        hour = here.hour + here.minute / 60 + here.second / 3600
        v = s.value
        if s.code in self.stuck:  # a jammed gauge repeats its value
            s.last_ms = ts
            return v
        if self.in_incident(s, ts):
            new = v + (1 - math.exp(-dt / INCIDENT_TAU_MIN)) * (s.out - v)
            new += self.rng.gauss(0, NOISE * s.half * 0.3) * math.sqrt(1 - math.exp(-2 * dt / TAU_MIN))
        elif s.hold:
            new = v + (1 - math.exp(-dt / TAU_MIN)) * (s.out - v)
            new += self.rng.gauss(0, NOISE * s.half * 0.1) * math.sqrt(1 - math.exp(-2 * dt / TAU_MIN))
        elif s.model is not None:
            new = self._model_value(s, ts, v, dt)
        else:
            target = s.centre + 0.5 * s.half * math.sin(2 * math.pi * (hour - 9) / 24 + s.phase)
            new = v + (1 - math.exp(-dt / TAU_MIN)) * (target - v)
            new += self.rng.gauss(0, NOISE * s.half) * math.sqrt(1 - math.exp(-2 * dt / TAU_MIN))
            if s.rate_limit:
                step = 0.5 * s.rate_limit * dt
                new = min(max(new, v - step), v + step)
            # Inside the band (off its edges); a value still outside it only comes back, never goes further.
            low, high = s.lo + s.margin, s.hi - s.margin
            new = min(max(new, min(low, v)), max(high, v))
        s.value, s.last_ms = new, ts
        return new

    def _model_value(self, s: SimSensor, ts: int, v: float, dt: float) -> float:
        """The demo model's value at ``ts`` with its noise (as the generated history
        has it); after an incident the value first comes back to the model."""
        import numpy as np

        from chengyun.demo.sensors import noisy, normal

        kind, params = s.model
        clean = normal(kind, params, np.array([ts]), _offset_ms(ts))
        if self._np_rng is None:
            self._np_rng = np.random.default_rng(self.rng.getrandbits(64))
        sample = float(noisy(kind, params, clean, self._np_rng)[0])
        away = abs(v - float(clean[0])) > _spread(kind, params, float(clean[0]))
        return v + (1 - math.exp(-dt / TAU_MIN)) * (sample - v) if away else sample

    def take(self, n: int, now_ms: int) -> list[tuple[str, int, float]]:
        """``n`` readings at ``now_ms``, one sensor after the other (a sensor's
        times stay strictly increasing)."""
        out = []
        for _i in range(n):
            s = self.sensors[self._next]
            self._next = (self._next + 1) % len(self.sensors)
            ts = now_ms if s.last_ms is None or now_ms > s.last_ms else s.last_ms + 1
            out.append((s.code, ts, round(self.value(s, ts), 6)))
        return out


# --------------------------------------------------------------------------- where readings go


class MqttSink:
    def __init__(self, url: str, *, qos: int = 1, gateway: str | None = None):
        self.address = parse_url(url)
        self.qos = qos
        self.gateway = gateway
        self.sent = self.acknowledged = 0
        self._infos: deque = deque()
        self._connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"chengyun-sim-{os.getpid()}",
                                  protocol=mqtt.MQTTv311, clean_session=True)
        if self.address.username:
            self.client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            self.client.tls_set()
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(0.5, 10)
        self.client.on_connect = lambda c, u, f, rc, p: self._connected.set() if not rc.is_failure else None
        self.client.on_disconnect = lambda c, u, f, rc, p: self._connected.clear()

    def open(self, timeout: float = 10.0) -> None:
        self.client.connect_async(self.address.host, self.address.port)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.client.loop_stop()
            raise CommandError(_("Cannot reach the MQTT broker at %(host)s:%(port)s.")
                               % {"host": self.address.host, "port": self.address.port})

    def send(self, rows: list[tuple[str, int, float]]) -> None:
        publish = self.client.publish
        if self.gateway:
            payload = json.dumps([{"sensor": c, "ts": t, "value": v} for c, t, v in rows])
            self._infos.append((publish(gateway_topic(self.gateway), payload, qos=self.qos), len(rows)))
        else:
            for c, t, v in rows:
                self._infos.append((publish(reading_topic(c), json.dumps({"ts": t, "value": v}), qos=self.qos), 1))
        self.sent += len(rows)
        self._settle()

    def _settle(self) -> None:
        while self._infos and self._infos[0][0].is_published():
            self.acknowledged += self._infos.popleft()[1]

    def close(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self._infos and time.monotonic() < deadline:
            info, _n = self._infos[0]
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            self._settle()
            if not info.is_published():
                break
        self.client.disconnect()
        self.client.loop_stop()


class HttpSink:
    """POSTs batches to ``/api/v1/signs/readings`` (body ``{"readings": [...]}``);
    a batch the server could not take (connection refused, 5xx) is sent again
    with the next one."""

    MAX_BACKLOG = 200_000

    def __init__(self, server: str, *, token: str, stderr):
        self.url = server.rstrip("/") + "/api/v1/signs/readings"
        self.token = token
        self.stderr = stderr
        self.sent = self.acknowledged = 0
        self.backlog: list[tuple[str, int, float]] = []

    def open(self, timeout: float = 10.0) -> None:
        pass

    def send(self, rows: list[tuple[str, int, float]]) -> None:
        self.sent += len(rows)
        batch = self.backlog + rows
        body = json.dumps({"readings": [{"sensor": c, "ts": t, "value": v} for c, t, v in batch]}).encode()
        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
        except urllib.error.HTTPError as e:
            if e.code < 500:
                raise CommandError(_("The server refused the readings (HTTP %(status)s): %(body)s")
                                   % {"status": e.code, "body": e.read()[:500].decode("utf-8", "replace")}) from None
            self._keep(batch, str(e))
            return
        except (urllib.error.URLError, OSError) as e:
            self._keep(batch, str(e))
            return
        self.backlog = []
        self.acknowledged += len(batch)

    def _keep(self, batch, problem: str) -> None:
        self.backlog = batch[-self.MAX_BACKLOG:]
        self.stderr.write(_("Sending failed (%(problem)s); %(count)d readings wait for the next try.")
                          % {"problem": problem, "count": len(self.backlog)})

    def close(self, timeout: float = 10.0) -> None:
        if self.backlog:
            self.send([])


class DbSink:
    """Writes straight through :func:`chengyun.signs.ingest.ingest` into the
    database this process uses: no broker, no server, no token (``make demo``)."""

    def __init__(self):
        self.sent = self.acknowledged = 0

    def open(self, timeout: float = 10.0) -> None:
        pass

    def send(self, rows: list[tuple[str, int, float]]) -> None:
        from chengyun.signs.ingest import ingest

        self.sent += len(rows)
        result = ingest(rows, source="simulator")
        self.acknowledged += result.stored + result.duplicates

    def close(self, timeout: float = 10.0) -> None:
        pass


# --------------------------------------------------------------------------- the command


class Command(BaseCommand):
    help = gettext_noop("Publish live generated readings for the sensors in the database (over MQTT or the HTTP "
                         "batch API) so the vital-signs board moves during a demo.")

    def add_arguments(self, parser):
        parser.add_argument("--via", choices=("mqtt", "http", "db"), default="mqtt",
                            help="mqtt: publish to the broker; http: POST batches to the API; "
                                 "db: write straight into this installation's database")
        parser.add_argument("--url", default=None,
                            help="MQTT broker (default settings.MQTT_URL) or, with --via http, the server "
                                 "(default http://127.0.0.1:8000)")
        parser.add_argument("--token", default=os.environ.get("CHENGYUN_TOKEN", ""),
                            help="API token for --via http (default $CHENGYUN_TOKEN)")
        parser.add_argument("--rate", type=float, default=None,
                            help="readings per second overall (default: each sensor once per its interval)")
        parser.add_argument("--sensors", default="", help="only sensors whose code starts with this (comma-separated)")
        parser.add_argument("--include-real", action="store_true",
                            help="also simulate sensors not marked as generated")
        parser.add_argument("--gateway", nargs="?", const="simulator", default=None, metavar="ID",
                            help="send gateway batches on city/gateway/ID/batch instead of one message per reading")
        parser.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
        parser.add_argument("--duration", type=float, default=None, help="seconds to run (default: until stopped)")
        parser.add_argument("--count", type=int, default=None, help="stop after this many readings")
        parser.add_argument("--incident", metavar="CODE", help="push this sensor out of its band for a while")
        parser.add_argument("--incident-after", type=float, default=10.0, help="seconds before the incident starts")
        parser.add_argument("--incident-for", type=float, default=180.0, help="seconds the incident lasts")
        parser.add_argument("--stuck", metavar="CODE", help="this sensor repeats its value (a stuck gauge)")
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--stats-every", type=float, default=10.0)

    def handle(self, *args, **o):
        rng = random.Random(o["seed"])
        qs = Sensor.objects.filter(active=True, virtual=False).select_related("indicator", "kind").order_by("code")
        if not o["include_real"]:
            qs = qs.filter(generated=True)
        prefixes = tuple(p.strip() for p in o["sensors"].split(",") if p.strip())
        ongoing = ongoing_warnings(qs)
        # A sensor that has gone silent stays silent (its silence is the warning shown).
        sensors = [sim_sensor(s, rng, hold=bool(ongoing.get(s.code, set()) - {Rule.MISSING, Rule.FLATLINE}))
                   for s in qs if (not prefixes or s.code.startswith(prefixes))
                   and Rule.MISSING not in ongoing.get(s.code, set())]
        if not sensors:
            raise CommandError(_("No sensors to simulate. Only sensors marked as generated are used unless "
                                 "--include-real is given; check --sensors."))
        rate = o["rate"] if o["rate"] else max(1.0, sum(1 / s.interval_s for s in sensors))
        gen = ValueGenerator(sensors, seed=o["seed"])
        if o["via"] == "db":
            sink = DbSink()
        elif o["via"] == "http":
            if not o["token"]:
                raise CommandError(_("--via http needs --token (or CHENGYUN_TOKEN)."))
            sink = HttpSink(o["url"] or "http://127.0.0.1:8000", token=o["token"], stderr=self.stderr)
        else:
            try:
                sink = MqttSink(o["url"] or settings.MQTT_URL, qos=o["qos"], gateway=o["gateway"])
            except ValueError as e:
                raise CommandError(str(e)) from None
        start_ms = int(time.time() * 1000)
        incident = None
        if o["incident"]:
            if o["incident"] not in {s.code for s in sensors}:
                raise CommandError(_("Sensor %(code)s is not among the simulated sensors.") % {"code": o["incident"]})
            incident = (start_ms + int(o["incident_after"] * 1000),
                        start_ms + int((o["incident_after"] + o["incident_for"]) * 1000))
            gen.incident(o["incident"], *incident)
        # A stuck gauge stays stuck (the flat-line warning shown).
        gen.stuck |= {code for code, rules in ongoing.items() if Rule.FLATLINE in rules}
        if o["stuck"]:
            if o["stuck"] not in {s.code for s in sensors}:
                raise CommandError(_("Sensor %(code)s is not among the simulated sensors.") % {"code": o["stuck"]})
            gen.stuck.add(o["stuck"])
        sink.open()

        self.stdout.write(_("Simulating %(count)d sensors at %(rate).1f readings/s via %(via)s. "
                            "These readings are GENERATED, not measured.")
                          % {"count": len(sensors), "rate": rate, "via": o["via"]})
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_a: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        tick = 0.1 if o["via"] == "mqtt" and not o["gateway"] else 1.0
        try:
            self._loop(gen, sink, rate=rate, tick=tick, stop=stop, duration=o["duration"], count=o["count"],
                       incident=incident, incident_code=o["incident"], stats_every=o["stats_every"])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            sink.close()
        self.stdout.write(_("Done: %(sent)d generated readings sent, %(acked)d acknowledged.")
                          % {"sent": sink.sent, "acked": sink.acknowledged})

    def _loop(self, gen, sink, *, rate, tick, stop, duration, count, incident, incident_code, stats_every):
        started = last = last_report = time.monotonic()
        budget = 0.0
        said = set()
        while not stop.is_set():
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            budget += rate * (now - last)
            last = now
            n = int(budget)
            if count is not None:
                n = min(n, count - sink.sent)
            if n > 0:
                now_ms = int(time.time() * 1000)
                if incident:
                    phase = "start" if incident[0] <= now_ms < incident[1] else "end" if now_ms >= incident[1] else None
                    if phase and phase not in said:
                        said.add(phase)
                        if phase == "start":
                            line = _("Incident on %(code)s: pushed out of its band.")
                        else:
                            line = _("Incident on %(code)s over: back towards its band.")
                        self.stdout.write(line % {"code": incident_code})
                sink.send(gen.take(n, now_ms))
                budget -= n
            if count is not None and sink.sent >= count:
                break
            if now - last_report >= stats_every:
                last_report = now
                self.stdout.write(_("%(sent)d generated readings sent, %(acked)d acknowledged.")
                                  % {"sent": sink.sent, "acked": sink.acknowledged})
            stop.wait(tick)
