"""The ``chengyun`` command: Django's management commands plus our own.

``chengyun migrate``, ``chengyun import-areas …``, ``chengyun serve``,
``chengyun worker``, ``chengyun audit verify`` … Dashes and underscores are
interchangeable in command names.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chengyun.settings")
    if len(argv) > 1 and not argv[1].startswith("-"):
        argv[1] = argv[1].replace("-", "_")
    from chengyun.locale_build import ensure_compiled

    ensure_compiled()
    from django.core.management import execute_from_command_line

    argv[0] = "chengyun"
    execute_from_command_line(argv)


if __name__ == "__main__":
    main()
