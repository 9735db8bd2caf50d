"""Tracking numbers: a check digit that catches what goes wrong when a number
is read out over the phone, and tells a report's number from a case's."""

from __future__ import annotations

import random

import pytest

from chengyun.intake import numbers


def test_the_check_digit_is_damms():
    assert numbers.check_digit("572") == "4"  # the example of Damm's algorithm
    assert numbers.check_digit("5724") == "0", "a number with its check digit checks to 0"
    assert numbers.valid("R202501150000123"), "numbers made before the check digit (15 digits) stay valid"


def test_every_mistyped_digit_and_every_swap_of_neighbours_is_caught():
    rng = random.Random(3)
    for _ in range(200):
        number = numbers.tracking_number(f"2026{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
                                         rng.randint(1, 9_999_999))
        digits = number[1:]
        assert len(digits) == numbers.DIGITS and numbers.valid(number)
        for i, d in enumerate(digits):
            for other in "0123456789".replace(d, ""):
                assert not numbers.valid("R" + digits[:i] + other + digits[i + 1:])
        for i in range(len(digits) - 1):
            if digits[i] != digits[i + 1]:
                assert not numbers.valid("R" + digits[:i] + digits[i + 1] + digits[i] + digits[i + 2:])


def test_many_at_once_equal_one_at_a_time():
    days = ["20261128", "20261129", "20270101"]
    pks = [1, 9_999_999, 12_345_678]  # the last has eight digits: taken one at a time
    one_by_one = [numbers.tracking_number(d, p) for d, p in zip(days, pks, strict=True)]
    assert numbers.tracking_numbers(days, pks) == one_by_one
    assert numbers.tracking_numbers(days[:2], pks[:2]) == one_by_one[:2]
    assert numbers.tracking_numbers([], []) == []


@pytest.mark.parametrize(("typed", "number"), [
    ("R2025011500001232", "R2025011500001232"),
    (" r2025 0115-0000 1232 ", "R2025011500001232"),
    ("2025011500001232", "R2025011500001232"),  # the R dropped, as callers do
    ("R202501150000123", "R202501150000123"),  # a number made before the check digit
    ("Ｒ２０２５０１１５００００１２３２", "R2025011500001232"),  # full-width, as Chinese input methods type
    ("202501150000123", None),  # 15 digits without R: a case's number
    ("R20250115", None),  # too short to be one
    ("20250115123456785", "R20250115123456785"),  # an id of ten million or more: 17 digits
    ("R２０２５", None),
    ("12345", None),
    ("", None),
])
def test_what_people_type_is_tidied(typed, number):
    assert numbers.normalise(typed) == number


def test_a_digit_too_many_is_caught():
    """A 0 added to a valid number keeps Damm's check valid; an id of eight digits never
    begins with 0, so such a number cannot be one (a trial typed one and got a plain 404)."""
    number = numbers.tracking_number("20261128", 30561)
    assert numbers.valid(number) and numbers.valid(number + "0") is False
    assert numbers.valid(numbers.tracking_number("20261128", 12_345_678)), "ids from ten million on: 17 digits, still valid"


@pytest.mark.django_db
def test_the_track_page_says_a_number_with_a_digit_too_many_cannot_be_right(client, intake_world):
    number = numbers.tracking_number("20261128", 30561) + "0"
    response = client.get(f"/track/{number}/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 404 and "This number cannot be right" in response.content.decode()
    # An id of a million or more: the number with a 0 added still checks, and its id has no
    # leading 0. It is a digit too many because, without it, it is a report's number.
    from chengyun.intake.models import Report
    from chengyun.intake.services import ReportInput, submit

    report = submit(ReportInput(channel="web", description="路灯不亮", address="区2")).report
    Report.objects.filter(pk=report.pk).update(number=numbers.tracking_number("20261128", 1_234_567))
    doubled = numbers.tracking_number("20261128", 1_234_567) + "0"
    assert numbers.valid(doubled) and numbers.misread(doubled)
    assert not numbers.misread(numbers.tracking_number("20261128", 12_345_678)), "a real 17-digit number, unknown"
