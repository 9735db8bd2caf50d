"""Generate a plausible history of cases for the demo city.

Every case is created and driven through the real service functions with
simulated time (``chengyun.clock.simulated``), so timelines, deadlines and the
audit chain are exactly what the live system would have written. Cases are
marked ``generated=True``; the actors are ``sim-*`` accounts that cannot log
in. The mix of categories follows the weights in ``pack/taxonomy.json`` (demo
choices, not statistics of a real city).
"""

from __future__ import annotations

import json
import random
from datetime import timedelta

from django.db import models, transaction
from django.utils import timezone

from chengyun.areas.models import Area
from chengyun.cases import services as s
from chengyun.cases.errors import CaseError
from chengyun.cases.models import Case, Channel, Satisfaction
from chengyun.cases.workflow import OPEN_STATUSES, CaseStatus
from chengyun.clock import simulated
from chengyun.intake.models import ClusterWarning, DuplicateSuggestion, Report, SuggestionStatus
from chengyun.intake.services import ReportInput, decide_suggestion, submit
from chengyun.org.models import Department, Role, User
from chengyun.taxonomy.models import Category
from chengyun.taxonomy.services import routing_snapshot

from .loader import PACK, random_point_in
from .texts import CALL_SHARE, compose

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
# People's doors and department systems; sensor alarms come from the demo's sensors
# (demo.sensors), not as made-up texts (a "sensor alarm" about a dog off its lead).
CHANNELS = [(Channel.HOTLINE, 58), (Channel.INSPECTOR, 20), (Channel.WEB, 15), (Channel.OPEN311, 5),
            (Channel.DEPARTMENT, 2)]
BATCH = 250  # generated cases per transaction


def _h(rng, lo, hi):
    return timedelta(hours=rng.uniform(lo, hi))


class Generator:
    def __init__(self, seed: int, log=print):
        self.rng = random.Random(seed)
        self.mail_rng = random.Random(seed + 1)  # who asks for messages: apart, so the city stays the same
        self.mailbox = 0
        self.log = log
        self.now = timezone.now()
        weights = {}
        for group in json.loads((PACK / "taxonomy.json").read_text(encoding="utf-8"))["categories"]:
            for leaf in group["children"]:
                weights[leaf["code"]] = leaf.get("weight", 1)
        self.categories = list(Category.objects.filter(code__in=weights))
        self.cat_weights = [weights[c.code] for c in self.categories]
        self.grids = list(Area.objects.filter(level__key="grid").select_related("parent__parent"))
        if not self.grids:  # a pack without grids: use the deepest level there is
            deepest = Area.objects.order_by("-level__depth").first()
            self.grids = list(Area.objects.filter(level=deepest.level)) if deepest else []
        self.users = {u.username: u for u in User.objects.filter(username__startswith="sim-")}
        self.recent: dict[tuple[int, int], Case] = {}

    def user(self, role: str) -> User:
        return self.users[f"sim-{role}"]

    def pick_category(self) -> Category:
        return self.rng.choices(self.categories, weights=self.cat_weights)[0]

    def contact(self) -> dict:
        """A generated caller: numbers start with 100, which no Chinese mobile
        number does, so a generated number can never reach a real person."""
        rng = self.rng
        name = rng.choice(SURNAMES) + rng.choice(["先生", "女士", "阿姨", "师傅"])
        return {"name": name, "phone": "100" + "".join(rng.choice("0123456789") for _ in range(8))}

    def web_contact(self) -> dict:
        """A web reporter: about a third give an email (on example.org, a domain
        reserved for examples: nothing generated reaches a person) and ask to
        be told of the report's progress, most in Chinese."""
        contact = self.contact()
        if self.mail_rng.random() < 0.35:
            self.mailbox += 1
            contact.update(email=f"demo-reporter-{self.mailbox}@example.org", notify=True,
                           language="en" if self.mail_rng.random() < 0.2 else "zh-hans")
        return contact

    def run(self, count: int) -> int:
        """Create and drive ``count`` cases, oldest first.

        Nothing else changes the routing tables while the history is made, so
        routing answers from a snapshot of them (the same decisions, without
        queries). Cases are committed ``BATCH`` at a time: each case is still
        all-or-nothing (a savepoint), but one commit serves a whole batch."""
        rng = self.rng
        made = 0
        starts = sorted(self.now - timedelta(days=90) * rng.random() ** 1.3 for _ in range(count))
        with routing_snapshot():
            for first in range(0, count, BATCH):
                with transaction.atomic():
                    for i in range(first, min(first + BATCH, count)):
                        made += self._one(starts[i])
                        if (i + 1) % 500 == 0:
                            self.log(f"  {i + 1}/{count} cases")
        return made

    def _one(self, created) -> int:
        """One case starting at ``created`` (moved into the day, mostly): 1 if made."""
        rng = self.rng
        # Reports come mostly by day.
        local_hour = (created.astimezone(timezone.get_current_timezone()).hour)
        if local_hour < 7 and rng.random() < 0.7:
            created += timedelta(hours=8)
        if created >= self.now:
            created = self.now - timedelta(minutes=rng.uniform(5, 300))
        try:
            with transaction.atomic():
                self.one_case(created)
        except CaseError as exc:  # a generated path the rules refuse is skipped, loudly
            self.log(f"  skipped one generated case: {exc.message}")
            return 0
        return 1

    def one_case(self, t):
        rng = self.rng
        cat = self.pick_category()
        grid = rng.choice(self.grids)
        geom = grid.geometry
        lon, lat = random_point_in(geom, rng)
        street = grid.parent.parent if grid.parent_id and grid.parent.parent_id else None
        channel = rng.choices([c for c, _ in CHANNELS], weights=[w for _, w in CHANNELS])[0]
        # Only a call is written down as a call ("市民来电反映：…").
        title, desc, address = compose(cat, rng, street_name=street.name if street else "",
                                       call_share=CALL_SHARE if channel == Channel.HOTLINE else 0.0)
        by = {Channel.HOTLINE: self.user("operator"), Channel.INSPECTOR: self.user("inspector")}.get(channel)
        # Operators and inspectors mostly choose the category; the rest is left to the classifier.
        on_the_spot = channel == Channel.INSPECTOR and cat.self_dispose and rng.random() < 0.6
        given = cat if (by is not None and rng.random() < 0.7) or channel == Channel.OPEN311 or on_the_spot else None
        with simulated(t):
            report = submit(ReportInput(
                channel=channel, title=title, description=desc, category=given, lon=lon, lat=lat, address=address,
                contact=(self.web_contact() if channel == Channel.WEB else self.contact()
                         if channel in (Channel.HOTLINE, Channel.OPEN311) else {}),
                source="demo-generator", generated=True,
                self_dispose_note="巡查发现后已现场处置" if on_the_spot else "",
            ), by=by).report
        case = report.case
        district = street.parent if street is not None else None
        key = (cat.pk, district.pk if district else 0)
        if report.duplicate == "attached" or case.status == CaseStatus.CLOSED:
            return case
        if case.status == CaseStatus.DISPATCHED:  # routed automatically
            self.recent[key] = case
            return self.handle(case, t, dispatched=True)

        def step(delta):
            nonlocal t
            t = t + delta
            return t < self.now

        # 受理: accept, reject or merge
        if not step(_h(rng, 0.05, 2) if rng.random() < 0.7 else _h(rng, 2, 12)):
            return case
        with simulated(t):
            earlier = self.recent.get(key)
            if (earlier is not None and earlier.status in OPEN_STATUSES and t - earlier.created_at < timedelta(days=2)
                    and rng.random() < 0.6):
                earlier.refresh_from_db()
                if earlier.status in OPEN_STATUSES:
                    return s.merge_case(case, into=earlier, by=self.user("operator"), note="同一问题重复反映")
            if rng.random() < 0.03:
                return s.reject_case(case, by=self.user("operator"), reason="不属于城市管理范围，已告知来电人")
            s.accept_case(case, by=self.user("operator"), category=cat if case.category_id is None else None)
        self.recent[key] = case
        return self.handle(case, t)

    def handle(self, case, t, again: bool = False, dispatched: bool = False, last: bool = False):
        rng = self.rng
        sim_handler, dispatcher = self.user("handler"), self.user("dispatcher")

        def at(delta):
            nonlocal t
            t = t + delta
            return t < self.now

        if not dispatched:
            if not at(_h(rng, 0.1, 3) if rng.random() < 0.7 else _h(rng, 3, 16)):
                return case
            with simulated(t):
                s.dispatch_case(case, by=dispatcher)
        if rng.random() < 0.06:  # 退单 and re-dispatch
            if not at(_h(rng, 0.5, 6)):
                return case
            with simulated(t):
                s.return_case(case, by=sim_handler, reason="经核实不属于本单位职责")
            if not at(_h(rng, 0.5, 4)):
                return case
            with simulated(t):
                s.dispatch_case(case, by=dispatcher)
        resp = float(case.category.response_hours)
        if not at(timedelta(hours=resp * rng.uniform(0.1, 1.4))):
            return case
        with simulated(t):
            s.start_case(case, by=sim_handler)
        allowed = (case.due_at - case.dispatched_at) if case.due_at else timedelta(hours=24)
        if rng.random() < 0.05:
            if not at(allowed * 0.4):
                return case
            with simulated(t):
                s.request_extension(case, by=sim_handler, hours=24, reason="需协调物业及施工单位")
            if not at(_h(rng, 0.5, 4)):
                return case
            with simulated(t):
                if rng.random() < 0.7:
                    s.approve_extension(case, by=self.user("supervisor"), note="同意延期")
                else:
                    s.deny_extension(case, by=self.user("supervisor"), reason="请按原时限处置")
            allowed = (case.due_at - t) if case.due_at else allowed
        late = rng.random() < 0.08
        share = rng.uniform(1.05, 1.8) if late else rng.uniform(0.15, 0.9)
        if not at(allowed * share * (0.6 if not late else 1)):
            return case
        for part in case.assignments.filter(active=True, role="assisting"):
            with simulated(t - timedelta(minutes=30)):
                s.start_case(case, by=sim_handler, department=part.department)
                s.report_done(case, by=sim_handler, department=part.department, note="配合处置完毕")
        with simulated(t):
            s.report_done(case, by=sim_handler, note="已处置完毕，现场已恢复")
        if not at(_h(rng, 1, 30)):
            return case
        with simulated(t):
            if rng.random() < 0.07:
                s.verify_case(case, by=self.user("inspector"), ok=False, note="现场核查问题仍存在")
                if not at(_h(rng, 4, 48)):
                    return case
                s_at = t
                with simulated(s_at):
                    s.report_done(case, by=sim_handler, note="已再次处置")
                if not at(_h(rng, 1, 24)):
                    return case
            with simulated(t):
                if rng.random() < 0.9:
                    s.verify_case(case, by=self.user("inspector"), ok=True, note="现场核查已整改")
                else:
                    s.close_case(case, by=self.user("supervisor"), reason="处置部门提供照片，无需现场核查")
        if not at(_h(rng, 12, 72)):
            return case
        r = rng.random()
        sat = Satisfaction.SATISFIED if r < 0.78 else Satisfaction.BASIC if r < 0.9 else (
            Satisfaction.UNREACHABLE if r < 0.93 or last else Satisfaction.UNSATISFIED)
        with simulated(t):
            s.record_callback(case, by=self.user("operator"), satisfaction=sat,
                              resolved=None if sat == Satisfaction.UNREACHABLE else sat != Satisfaction.UNSATISFIED,
                              note="电话回访")
        if sat == Satisfaction.UNSATISFIED and not again and at(_h(rng, 2, 24)):
            return self.handle(case, t, again=True)  # reopened: dispatched once more
        if sat == Satisfaction.UNSATISFIED and again and at(_h(rng, 2, 24)):
            # Reopened a second time: the centre sends it on at once again, and the
            # third round ends the history (a case reopened months ago and never sent
            # on is not a city the demo shows).
            return self.handle(case, t, again=True, last=True)
        return case

    def plant_incidents(self, count: int = 4) -> int:
        """Planted incidents: a burst of reports of one category in one place
        (a main burst, a street flooded), enough to raise a cluster warning."""
        rng = self.rng
        cats = [c for c in self.categories if c.cluster_reports]
        made = 0
        for i in range(count):
            if not cats:
                break
            cat = rng.choice(cats)
            grid = rng.choice(self.grids)
            lon0, lat0 = random_point_in(grid.geometry, rng)
            street = grid.parent.parent if grid.parent_id and grid.parent.parent_id else None
            n = cat.cluster_reports + rng.randint(1, 4)
            step = timedelta(minutes=cat.cluster_window_minutes / (cat.cluster_reports + 5))
            # The newest incident is happening now (its last call 5 minutes ago, never
            # after the load); the others were earlier this month.
            start = (self.now - step * (n - 1) - timedelta(minutes=5) if i == 0
                     else self.now - timedelta(days=rng.uniform(2, 25)))
            spread = cat.cluster_radius_m / 3 / 111_000
            reports = []
            for k in range(n):
                t = start + step * k
                title, desc, address = compose(cat, rng, street_name=street.name if street else "")
                with simulated(t), transaction.atomic():
                    reports.append(submit(ReportInput(
                        channel=Channel.HOTLINE, title=title, description=desc, category=cat,
                        lon=lon0 + rng.uniform(-spread, spread), lat=lat0 + rng.uniform(-spread, spread),
                        address=address, contact=self.contact(), source="demo-generator", generated=True,
                    ), by=self.user("operator")).report)
            if i:
                self.settle_incident(reports, t + _h(rng, 0.3, 1.5))
            made += 1
        return made

    def settle_incident(self, reports, t) -> None:
        """An incident earlier this month, as a dispatcher handles one: the calls'
        cases still waiting are merged into the smart-discovery case (which answers
        their duplicate questions), or, without a warning, each repeated call into
        the case it repeats; then the cases left are handled, each on its own (a
        case sent on before the warning was raised is handled by its department)."""
        dispatcher = self.user("dispatcher")
        waiting = (CaseStatus.NEW, CaseStatus.ACCEPTED)
        cases = {r.case_id for r in Report.objects.filter(pk__in=[r.pk for r in reports])} - {None}
        try:
            with simulated(t), transaction.atomic():
                warning = ClusterWarning.objects.filter(reports__in=reports).select_related("case").first()
                whole = warning.case if warning is not None else None
                if whole is not None:
                    cases.add(whole.pk)
                    for member in Case.objects.filter(pk__in=cases, status__in=waiting).exclude(pk=whole.pk):
                        s.merge_case(member, into=whole, by=dispatcher, note="同一事件：并入智能发现工单")
                else:
                    for sg in (DuplicateSuggestion.objects.filter(report__in=reports, status=SuggestionStatus.PENDING)
                               .order_by("created_at", "pk")):
                        sg.refresh_from_db()  # an earlier merge may have answered it
                        if sg.status == SuggestionStatus.PENDING and sg.candidate.status in OPEN_STATUSES:
                            decide_suggestion(sg, merge=True, by=dispatcher, note="同一事件重复反映")
                for case in Case.objects.filter(pk__in=cases, status=CaseStatus.NEW):
                    s.accept_case(case, by=self.user("operator"))
        except CaseError as exc:  # as in _one(): a generated path the rules refuse is skipped, loudly
            self.log(f"  left one planted incident unsettled: {exc.message}")
            return
        for case in Case.objects.filter(pk__in=cases, status__in=(CaseStatus.ACCEPTED, CaseStatus.DISPATCHED)):
            try:
                with transaction.atomic():
                    self.handle(case, t, dispatched=case.status == CaseStatus.DISPATCHED)
            except CaseError as exc:
                self.log(f"  left one case of a planted incident unhandled: {exc.message}")


    def give_handlers_work(self, departments, per_department: int = 3) -> int:
        """Fresh cases dispatched to each of ``departments`` (the demo handlers'):
        a history ending now leaves most departments' cases closed, and a person
        playing a handler should find work in the queue. Categories the routing
        rules give the department, in its area; a case the rules send elsewhere
        is dispatched to it by the (simulated) dispatcher, as an override."""
        from chengyun.cases.models import CaseAssignment
        from chengyun.taxonomy.models import RoutingRule

        rng, made = self.rng, 0
        for dept in departments:
            open_parts = CaseAssignment.objects.filter(
                department=dept, active=True, role="lead",
                case__status__in=(CaseStatus.DISPATCHED, CaseStatus.IN_PROGRESS)).count()
            cats = list(Category.objects.reportable().filter(
                pk__in=RoutingRule.objects.filter(active=True).filter(
                    models.Q(lead_department=dept) | models.Q(lead_kind=dept.kind_id)).values("category_id")))
            cats = cats or [c for c in self.categories if c.active]
            grids = [g for g in self.grids if (g.path or "").startswith(dept.area.path)] or self.grids
            need, tries = max(0, per_department - open_parts), 0
            while need and tries < 4 * per_department:
                tries += 1
                cat, grid = rng.choice(cats), rng.choice(grids)
                lon, lat = random_point_in(grid.geometry, rng)
                street = grid.parent.parent if grid.parent_id and grid.parent.parent_id else None
                title, desc, address = compose(cat, rng, street_name=street.name if street else "")
                t = self.now - timedelta(minutes=rng.uniform(20, 120) + 5 * tries)  # fresh: within their deadline
                with simulated(t), transaction.atomic():
                    report = submit(ReportInput(
                        channel=Channel.HOTLINE, title=title, description=desc, category=cat, lon=lon, lat=lat,
                        address=address, contact=self.contact(), source="demo-generator", generated=True,
                    ), by=self.user("operator")).report
                    case = report.case
                    if report.duplicate != "new":
                        continue  # joined an open case (or a question about one): not a case of its own
                    if case.status in (CaseStatus.NEW, CaseStatus.ACCEPTED, CaseStatus.DISPATCHED) and not \
                            case.assignments.filter(department=dept, active=True, role="lead").exists():
                        if case.status == CaseStatus.NEW:
                            s.accept_case(case, by=self.user("operator"))
                        if case.status == CaseStatus.DISPATCHED:
                            if tries <= per_department:
                                continue  # the rules sent it elsewhere: a case for them, try again for this one
                            # No rule sends such cases to this department (a city bureau, where the
                            # rules name the districts'): the dispatcher recalls one (改派).
                            s.recall_case(case, by=self.user("dispatcher"), reason="演示：改派市级部门处置")
                        s.dispatch_case(case, by=self.user("dispatcher"), lead=dept, note="演示：派给本单位处置")
                need -= 1
                made += 1
        return made


def generate_cases(count: int, *, seed: int = 20261127, log=print) -> int:
    if count <= 0:
        return 0
    existing = Case.objects.filter(generated=True).count()
    if existing:
        log(f"  cases: {existing} generated cases already present, none added")
        return 0
    gen = Generator(seed, log)
    made = gen.run(count)
    incidents = gen.plant_incidents()
    from .loader import DEMO_USERS

    handler_depts = list(Department.objects.filter(
        code__in=[d for _u, _n, role, _a, d in DEMO_USERS if role == Role.HANDLER and d]).select_related("area"))
    fresh = gen.give_handlers_work(handler_depts)
    counts = s.sweep_deadlines()
    log(f"  cases: {made} generated, {incidents} planted incidents, {fresh} fresh cases for the demo handlers; "
        f"deadline sweep: {counts}")
    return made
