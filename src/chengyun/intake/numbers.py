"""Tracking numbers of reports: ``R``, the day received (the city's time),
the report's id in seven digits, and a check digit.

The check digit (Damm's algorithm) catches every mistyped digit and every swap
of two neighbouring digits, the mistakes of a number read out over the phone.
It also tells a report's number from a case's when the ``R`` is dropped: a
case's number is the day and seven digits (15), a report's 16. Numbers made
before the check digit (``R`` and 15 digits) stay valid as they are.
"""

from __future__ import annotations

import re

import numpy as np

# The quasigroup of H. Michael Damm's thesis (2004): weakly totally anti-symmetric.
DAMM = np.array([
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
], dtype=np.int8)
_ROWS = DAMM.tolist()
DIGITS = 16  # a report's number after the R: day (8), id (7), check (1)
CASE_DIGITS = 15  # a case's number: day (8), id (7)
_SPACES = re.compile(r"[\s\-]+")
_FULL_WIDTH = str.maketrans("０１２３４５６７８９Ｒｒ－", "0123456789RR-")  # as Chinese input methods type them


def check_digit(digits: str) -> str:
    interim = 0
    for d in digits:
        interim = _ROWS[interim][ord(d) - 48]
    return chr(48 + interim)


def check_digits(bodies: np.ndarray) -> np.ndarray:
    """Check digits of many numbers at once: ``bodies`` is an (n, k) array of digits."""
    interim = np.zeros(len(bodies), dtype=np.int8)
    for col in range(bodies.shape[1]):
        interim = DAMM[interim, bodies[:, col]]
    return interim


def tracking_number(day: str, pk: int) -> str:
    """``day`` as YYYYMMDD in the city's time."""
    body = f"{day}{pk:07d}"
    return f"R{body}{check_digit(body)}"


def tracking_numbers(days: list[str], pks: list[int]) -> list[str]:
    bodies = [f"{d}{pk:07d}" for d, pk in zip(days, pks, strict=True)]
    if not bodies:
        return []
    width = len(bodies[0])
    if any(len(b) != width for b in bodies):  # an id beyond seven digits: one at a time
        return [f"R{b}{check_digit(b)}" for b in bodies]
    digits = np.frombuffer("".join(bodies).encode("ascii"), dtype=np.uint8).reshape(len(bodies), width) - 48
    checks = check_digits(digits)
    return [f"R{b}{c}" for b, c in zip(bodies, checks.tolist(), strict=True)]


def valid(number: str) -> bool:
    """Whether a report number's check digit is right (numbers of the old format, 15
    digits, have none and pass)."""
    digits = number[1:] if number[:1] in "Rr" else number
    if not (digits.isascii() and digits.isdigit()):
        return False
    if len(digits) > DIGITS and digits[8] == "0":
        # An id of eight digits or more has no leading zero: a digit too many, which
        # Damm's check does not catch at the end (a valid number with a 0 added is valid).
        return False
    return len(digits) < DIGITS or check_digit(digits) == "0"


def misread(text: str) -> bool:
    """Whether ``text`` looks like a tracking number but cannot be one: its check digit is
    wrong and no report has it (a digit misheard on the phone, a link with a digit changed),
    or it has 17 digits, no report has it, and without one of them it is a report's
    number (a digit too many, which Damm's check may let through)."""
    from .models import Report

    typed = normalise(text)
    if typed is None or Report.objects.filter(number=typed).exists():
        return False
    if not valid(typed):
        return True
    # Seventeen digits that check: an id of ten million or more, or a number of sixteen
    # with a digit too many that Damm's check let through. The latter if, without one
    # of its digits, it is a report's number.
    digits = typed[1:]
    return len(digits) == DIGITS + 1 and Report.objects.filter(
        number__in={"R" + digits[:i] + digits[i + 1:] for i in range(len(digits))}).exists()


def normalise(text: str) -> str | None:
    """What someone typed or read out, as a report number, or None if it cannot be one:
    full-width characters made plain, spaces and dashes dropped, ``r`` upper-cased,
    and the ``R`` added to 16 or 17 digits (15 digits alone are a case's number); ``R``
    with fewer than 15 digits is no number. Whether it exists is for the caller to look
    up before saying a digit is wrong: numbers made before the check digit, with ids of
    ten million and more, have 16 digits and no check digit."""
    text = _SPACES.sub("", (text or "").translate(_FULL_WIDTH)).upper()
    if text.isascii() and text.isdigit() and len(text) in (DIGITS, DIGITS + 1):  # ids from ten million on: 17
        return "R" + text
    if text[:1] == "R" and text[1:].isascii() and text[1:].isdigit() and len(text) > CASE_DIGITS:
        return text
    return None
