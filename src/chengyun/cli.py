"""The ``chengyun`` command: Django's management commands plus our own.

``chengyun migrate``, ``chengyun import-areas …``, ``chengyun serve``,
``chengyun worker``, ``chengyun audit verify`` … Dashes and underscores are
interchangeable in command names.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata

# Long-running commands, and those that write much text into the database: they keep the
# site's language (LANGUAGE_CODE) for what they store, as every request and the worker do.
SERVICES = frozenset({"serve", "runserver", "worker", "process_intake", "db_worker", "ingest_mqtt",
                      "simulate_sensors", "sweep_deadlines", "signs_sweep", "load_demo", "shell", "dbshell"})


def language_from_environment(environ=os.environ) -> str | None:
    """The language the terminal asks for (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``,
    ``LANG``, the first set, as gettext reads them): "en" or "zh-hans", or None
    (``C``, ``POSIX``, unset or another language: the site's default, Chinese)."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = (environ.get(name) or "").split(":")[0].strip().lower()
        if not value:
            continue
        if value.startswith("en"):
            return "en"
        if value.startswith("zh"):
            return "zh-hans"
        return None
    return None


def _summary(text: str) -> str:
    """The first sentence of a command's help (to its first full stop)."""
    text = " ".join((text or "").split())
    return text[: text.index(". ") + 1] if ". " in text else text


_CJK = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f"
_TOKENS = re.compile(rf"\s+|[{_CJK}]|[^\s{_CJK}]+")
_NO_LINE_START = set("，。、；：）」』！？")


def _cells(text: str) -> int:
    """Terminal columns: a Chinese character takes two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    """``text`` in lines of at most ``width`` terminal columns, the first begun with
    ``first``, the others with ``rest``; broken at spaces, and between Chinese
    characters (not before a closing mark), never inside a word."""
    units: list[str] = []  # words, Chinese characters with the closing marks after them, and spaces
    for token in _TOKENS.findall(text):
        if token in _NO_LINE_START and units and not units[-1].isspace():
            units[-1] += token
        else:
            units.append(token)
    lines, line, spaced, empty = [], first, False, True
    for unit in units:
        if unit.isspace():
            spaced = True
            continue
        piece = (" " if spaced and not empty else "") + unit
        if not empty and _cells(line + piece) > width:
            lines.append(line)
            line, piece = rest, unit
        line, spaced, empty = line + piece, False, False
    return [*lines, line]


def main_help(width: int = 100) -> str:
    """``chengyun help``: our commands with what each does, as the README writes
    them (import-reports, not import_reports); Django's own, by name only."""
    import textwrap

    from django.core.management import get_commands, load_command_class
    from django.utils.translation import gettext as _

    ours, theirs = [], []
    for name, app in sorted(get_commands().items()):
        (ours if app.startswith("chengyun") else theirs).append((name.replace("_", "-"), app))
    pad = max(len(name) for name, _app in ours) + 2
    lines = [_("Usage: chengyun COMMAND [options]. \"chengyun help COMMAND\" shows a command's options."), "",
             _("Chengyun's commands:")]
    for name, app in ours:
        about = _(_summary(load_command_class(app, name.replace("-", "_")).help))  # in the terminal's language
        lines += wrap(about, width, f"  {name:<{pad}}", " " * (pad + 2))
    lines += ["", _("Django's commands (administration, e.g. migrate, createsuperuser, changepassword):")]
    lines += textwrap.wrap(", ".join(name for name, _app in theirs), width - 2, initial_indent="  ",
                           subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chengyun.settings")
    if len(argv) > 1 and not argv[1].startswith("-"):
        argv[1] = argv[1].replace("-", "_")
        if argv[1] == "help" and len(argv) > 2 and not argv[2].startswith("-"):
            argv[2] = argv[2].replace("-", "_")  # chengyun help import-reports
    from chengyun.locale_build import ensure_compiled

    ensure_compiled()
    import django
    from django.core.management.base import CommandError, CommandParser, handle_default_options
    from django.utils import translation

    argv[0] = "chengyun"
    command = argv[1] if len(argv) > 1 else "help"
    # --settings and --pythonpath first, as Django's own start does, then the setup
    # the translations need.
    parser = CommandParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--settings")
    parser.add_argument("--pythonpath")
    try:
        options, _rest = parser.parse_known_args(argv[2:])
        handle_default_options(options)
    except CommandError:
        pass
    django.setup()
    if command in SERVICES:
        # They store what they write in the site's language, whatever the terminal's.
        _execute(argv)
        return
    # The command's messages in the terminal's language (the web pages follow the
    # browser's, whatever the server's environment says).
    with translation.override(language_from_environment() or "zh-hans"):
        if len(argv) == 1 or (len(argv) == 2 and argv[1] in ("help", "--help", "-h")):
            import shutil

            # As wide as the terminal, up to 100 columns (argparse's help does the same).
            sys.stdout.write(main_help(max(60, min(100, shutil.get_terminal_size((100, 24)).columns))))
            return
        _execute(argv)


def _execute(argv: list[str]) -> None:
    """Run a command (Django set up) so that its usage line names it as the README
    does: ``chengyun import-reports``, not ``chengyun import_reports``."""
    from django.core.management import ManagementUtility, execute_from_command_line

    if len(argv) > 2 and argv[1] == "help" and not argv[2].startswith("-"):
        ManagementUtility(argv).fetch_command(argv[2]).print_help(argv[0], argv[2].replace("_", "-"))
    elif len(argv) > 1 and not argv[1].startswith("-") and argv[1] not in ("help", "version"):
        command = ManagementUtility(argv).fetch_command(argv[1])
        command.run_from_argv([argv[0], argv[1].replace("_", "-"), *argv[2:]])
    else:
        execute_from_command_line(argv)


if __name__ == "__main__":
    main()
