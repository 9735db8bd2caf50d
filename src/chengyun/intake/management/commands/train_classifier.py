"""``chengyun train-classifier``: train a new classifier version from the
city's handled cases, print its held-out scores, and manage versions
(``--list``, ``--activate N``, ``--rollback``)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from chengyun.intake.classifier import (
    MIN_CALIBRATION_CASES,
    TAXONOMY_REPEAT,
    activate_version,
    active_model,
    previously_active,
    taxonomy_examples,
    train_and_store,
)
from chengyun.intake.models import ClassifierModel
from chengyun.intake.services import training_examples
from chengyun.taxonomy.models import Category

ACTOR = "cli:train-classifier"
TOP_CATEGORIES = 15
# A new version whose held-out macro F1 is this much below the active one's is
# stored but not put in use without --force (its data may have gone wrong).
MAX_F1_DROP = 0.05


class Command(BaseCommand):
    help = (gettext_noop("Train a new text classifier version on the handled cases (staff corrections count 3x), "
                         "print held-out accuracy, macro F1 and per-category precision/recall, and store it "
                         "(active unless --no-activate, or unless its macro F1 is more than 5 points below the "
                         "active version's on the same held-out examples: then --force).")
            + " --list, --activate N and --rollback manage the stored versions.")

    def add_arguments(self, parser):
        parser.add_argument("--test-share", type=float, default=0.2, help="share of examples held out for scoring")
        parser.add_argument("--seed", type=int, default=0, help="random seed of the held-out split")
        parser.add_argument("--min-examples", type=int, default=50, help="refuse to train on fewer examples")
        parser.add_argument("--no-activate", action="store_true", help="store the new version without activating it")
        parser.add_argument("--force", action="store_true",
                            help="activate the new version even if it scores well below the active one")
        parser.add_argument("--note", default="", help="a note on the training data, kept with the version")
        parser.add_argument("--all", action="store_true", help=f"show every category, not the worst {TOP_CATEGORIES}")
        parser.add_argument("--limit", type=int, default=None, help="use at most this many (newest) cases")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--list", action="store_true", help="list the stored versions and stop")
        group.add_argument("--activate", type=int, metavar="N", help="activate stored version N and stop")
        group.add_argument("--rollback", action="store_true", help="activate the version that was in use before the active one")

    def handle(self, *args, **o):
        if o["list"]:
            return self.list_versions()
        if o["activate"] is not None:
            return self.activate(o["activate"])
        if o["rollback"]:
            return self.rollback()
        return self.train(o)

    # ------------------------------------------------------------------ versions

    def list_versions(self) -> None:
        models = list(ClassifierModel.objects.defer("blob").order_by("version"))
        if not models:
            self.stdout.write(_("No classifier has been trained yet."))
            return
        self.stdout.write(f"  {_('version'):>8}  {_('accuracy'):>9}  {_('macro F1'):>9}  {_('examples'):>9}  "
                          f"{_('trained')}  {_('by')}  {_('training data')}")
        for m in models:
            mark = "*" if m.active else " "
            self.stdout.write(
                f"{mark} {m.version:>8}  {m.accuracy:>9.1%}  {m.macro_f1:>9.1%}  {m.n_train + m.n_test:>9}  "
                f"{timezone.localtime(m.created_at):%Y-%m-%d %H:%M}  {m.trained_by}  {m.data_note}"
            )
        self.stdout.write(_("* = active"))

    def activate(self, version: int) -> None:
        if not ClassifierModel.objects.filter(version=version).exists():
            raise CommandError(_("There is no classifier version %(version)s.") % {"version": version})
        activate_version(version, by=ACTOR)
        self.stdout.write(_("Version %(version)s is now active.") % {"version": version})

    def rollback(self) -> None:
        active = ClassifierModel.objects.filter(active=True).values_list("version", flat=True).first()
        if active is None:
            raise CommandError(_("No version is active; use --activate N."))
        previous = previously_active(active)
        if previous is None:
            raise CommandError(_("No version was in use before version %(version)s; there is nothing to roll back "
                                 "to (--list shows the stored versions, --activate N uses one).")
                               % {"version": active})
        activate_version(previous, by=ACTOR)
        self.stdout.write(_("Rolled back from version %(old)s to version %(new)s.") % {"old": active, "new": previous})

    # ------------------------------------------------------------------ training

    def train(self, o) -> None:
        if not 0 <= o["test_share"] < 1:
            raise CommandError(_("--test-share must be at least 0 and below 1."))
        texts, labels, weights, info = training_examples(limit=o["limit"])
        categories = sorted(set(labels))
        self.stdout.write(_("%(n)s examples (%(corrected)s corrected by staff, weighted 3x) in %(k)s categories.")
                          % {"n": len(texts), "corrected": info["corrected"], "k": len(categories)})
        if len(texts) < o["min_examples"]:
            raise CommandError(
                _("Too few examples to train: %(n)s, at least %(min)s are needed (handled cases with a category; "
                  "see --min-examples).") % {"n": len(texts), "min": o["min_examples"]}
            )
        if len(categories) < 2:
            raise CommandError(_("All examples have the same category; a classifier needs at least two."))
        extra = taxonomy_examples()
        self.stdout.write(_("Also learnt, never held out: the categories' names and keywords (%(n)s short texts).")
                          % {"n": len(extra[0]) // TAXONOMY_REPEAT})
        in_use = active_model()
        result = train_and_store(
            texts, labels, weights, by=ACTOR, test_share=o["test_share"], seed=o["seed"], activate=False,
            note=o["note"], extra=extra, rival=in_use if in_use[0] is not None else None,
        )
        rec, metrics = result.record, result.metrics
        # Both on the same held-out cases (the active version may have learnt some of
        # them, which favours keeping it).
        rival = metrics.get("rival")
        worse = rival is not None and rec.macro_f1 < rival["macro_f1"] - MAX_F1_DROP
        if not o["no_activate"] and (not worse or o["force"]):
            activate_version(rec.version, by=ACTOR)
            rec.active = True
        if rec.n_test:
            self.stdout.write(_("Held-out examples: %(n)s. Accuracy: %(acc).1f%%. Macro F1: %(f1).1f%%.") % {
                "n": rec.n_test, "acc": 100 * metrics["accuracy"], "f1": 100 * metrics["macro_f1"]})
            self.per_category_table(metrics["per_category"], show_all=o["all"])
            self.calibration(metrics["calibration"])
            if rival is not None:
                self.stdout.write(_("The active version %(version)s on the same held-out examples: accuracy "
                                    "%(acc).1f%%, macro F1 %(f1).1f%%.") % {
                    "version": rival["version"], "acc": 100 * rival["accuracy"], "f1": 100 * rival["macro_f1"]})
        else:
            self.stdout.write(_("No examples were held out (--test-share 0 or too few per category): no scores."))
        if rec.active:
            self.stdout.write(_("Stored as version %(version)s (active).") % {"version": rec.version})
        elif worse and not o["no_activate"]:
            self.stderr.write(_(
                "Stored as version %(version)s, NOT active: its macro F1 (%(f1).1f%%) is more than %(drop)s points "
                "below that of the active version %(active)s on the same examples (%(active_f1).1f%%). Check the "
                "training data (are the categories of the handled cases right?); to use it anyway: "
                "--activate %(version)s.") % {
                "version": rec.version, "f1": 100 * rec.macro_f1, "drop": round(100 * MAX_F1_DROP),
                "active": rival["version"], "active_f1": 100 * rival["macro_f1"]})
        else:
            self.stdout.write(_("Stored as version %(version)s (not active; activate it with --activate %(version)s).")
                              % {"version": rec.version})

    def calibration(self, c: dict) -> None:
        if not c["fitted"]:
            self.stdout.write(_("Confidences not calibrated: %(n)s held-out examples, at least %(min)s are needed.")
                              % {"n": c["cases"], "min": MIN_CALIBRATION_CASES})
            return
        if c["right"] is None:
            self.stdout.write(_("Confidences calibrated on the held-out examples (temperature %(t).2f). At the "
                                "threshold %(th).2f, none of them would be routed automatically.")
                              % {"t": c["temperature"], "th": c["threshold"]})
            return
        self.stdout.write(_(
            "Confidences calibrated on the held-out examples (temperature %(t).2f). At the threshold %(th).2f, "
            "%(routed).1f%% of them would be routed automatically, %(right).1f%% of those right (uncalibrated: "
            "%(routed0).1f%% routed).") % {
            "t": c["temperature"], "th": c["threshold"], "routed": 100 * c["routed"],
            "right": 100 * c["right"], "routed0": 100 * c["routed_before"]})

    def per_category_table(self, per: dict, *, show_all: bool) -> None:
        rows = sorted(per.items(), key=lambda kv: (kv[1]["f1"], kv[1]["recall"], -kv[1]["support"], kv[0]))
        names = {c.code: c.display_name for c in Category.objects.filter(code__in=list(per))}
        shown = rows if show_all else rows[:TOP_CATEGORIES]
        if not show_all and len(rows) > len(shown):
            self.stdout.write(_("The %(n)s worst of %(total)s categories (--all shows every one):")
                              % {"n": len(shown), "total": len(rows)})
        self.stdout.write(f"{_('category'):<10} {_('precision'):>9} {_('recall'):>9} {'F1':>9} {_('support'):>8}  "
                          f"{_('name')}")
        for code, s in shown:
            self.stdout.write(f"{code:<10} {s['precision']:>9.1%} {s['recall']:>9.1%} {s['f1']:>9.1%} "
                              f"{s['support']:>8}  {names.get(code, '')}")
