"""Compile the gettext catalogs (.po → .mo) with polib: no GNU gettext needed."""

from __future__ import annotations

from pathlib import Path

LOCALE_DIR = Path(__file__).resolve().parent / "locale"


def compile_catalogs(force: bool = False) -> list[Path]:
    import polib

    done = []
    for po_path in sorted(LOCALE_DIR.glob("*/LC_MESSAGES/*.po")):
        mo_path = po_path.with_suffix(".mo")
        if force or not mo_path.exists() or mo_path.stat().st_mtime < po_path.stat().st_mtime:
            polib.pofile(str(po_path)).save_as_mofile(str(mo_path))
            done.append(mo_path)
    return done


def ensure_compiled() -> None:
    try:
        compile_catalogs()
    except OSError:
        pass  # a read-only install keeps whatever catalogs it shipped
