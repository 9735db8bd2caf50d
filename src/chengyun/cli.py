"""The ``chengyun`` command: Django's management commands plus our own.

``chengyun migrate``, ``chengyun import-areas …``, ``chengyun serve``,
``chengyun worker``, ``chengyun audit verify`` … Dashes and underscores are
interchangeable in command names.
"""

from __future__ import annotations

import os
import sys


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


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chengyun.settings")
    if len(argv) > 1 and not argv[1].startswith("-"):
        argv[1] = argv[1].replace("-", "_")
    from chengyun.locale_build import ensure_compiled

    ensure_compiled()
    import django
    from django.core.management import ManagementUtility, execute_from_command_line
    from django.utils import translation

    argv[0] = "chengyun"
    django.setup()
    # The command's messages in the terminal's language (the web pages follow the
    # browser's, whatever the server's environment says).
    with translation.override(language_from_environment() or "zh-hans"):
        if len(argv) == 1 or (len(argv) == 2 and argv[1] in ("help", "--help", "-h")):
            # The list of commands as the README writes them: import-reports, not import_reports.
            text = ManagementUtility(argv).main_help_text()
            sys.stdout.write("\n".join(line.replace("_", "-") if line.startswith("    ") else line
                                       for line in text.splitlines()) + "\n")
            return
        execute_from_command_line(argv)


if __name__ == "__main__":
    main()
