"""The ``chengyun`` command itself: its language and its list of commands."""

from __future__ import annotations

import re

import pytest

from chengyun.cli import language_from_environment, main


@pytest.mark.parametrize(("environ", "language"), [
    ({"LANG": "en_US.UTF-8"}, "en"),
    ({"LANG": "zh_CN.UTF-8"}, "zh-hans"),
    ({"LANG": "C.UTF-8"}, None),
    ({}, None),
    ({"LANGUAGE": "en_GB:en", "LANG": "zh_CN.UTF-8"}, "en"),  # as gettext: LANGUAGE first
    ({"LC_ALL": "zh_TW.UTF-8", "LANG": "en_US.UTF-8"}, "zh-hans"),
    ({"LANG": "de_DE.UTF-8"}, None),  # not one of ours: the site's default
])
def test_the_terminal_says_the_language(environ, language):
    assert language_from_environment(environ) == language


def test_the_command_list_is_written_as_the_readme_writes_it(capsys, monkeypatch):
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    main(["chengyun", "help"])
    out = capsys.readouterr().out
    assert "  import-reports" in out and "  train-classifier" in out and "import_reports" not in out
    # Ours say what they do (the first sentence of their help); Django's are named after them.
    ours, django = out.split("Django's commands")
    assert re.search(r"^  create-api-key +Make an Open311 API key for a partner and print it", ours, re.M)
    assert re.search(r"^  load-demo +Load the demo city", ours, re.M)
    assert "migrate" not in ours and "migrate," in django and "createsuperuser" in django


def test_the_command_list_speaks_chinese_too(capsys, monkeypatch):
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    main(["chengyun", "help"])
    out = capsys.readouterr().out
    assert "城运的命令" in out and "  import-reports" in out
    assert re.search(r"^  create-api-key +为合作方生成一个 Open311 API 密钥", out, re.M), "what each does, in Chinese"
    assert "Make an Open311" not in out
    # Chinese characters take two columns: the lines still fit the 100 the list is made for.
    from chengyun.cli import _cells

    assert max(_cells(line) for line in out.splitlines()) <= 100


def test_wrapping_breaks_between_chinese_characters_and_at_spaces_only():
    from chengyun.cli import wrap

    assert wrap("aaa bbb ccc", 8, "", "  ") == ["aaa bbb", "  ccc"]
    assert wrap("一二三四五，七", 11, "", "") == ["一二三四", "五，七"], "a comma does not begin a line"
    assert wrap("用 `locate --csv` 批量", 14, "", "") == ["用 `locate", "--csv` 批量"]


@pytest.mark.django_db
def test_a_command_speaks_the_terminals_language_and_leaves_the_process_as_it_was(monkeypatch, capsys):
    from django.db import connections
    from django.utils import translation

    # run_from_argv closes every connection when it is done, which would end the test's transaction.
    monkeypatch.setattr(connections, "close_all", lambda: None)
    before = translation.get_language()
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    for lang, words in (("en_US.UTF-8", "No user named “ghost”"), ("zh_CN.UTF-8", "没有名为“ghost”的用户")):
        monkeypatch.setenv("LANG", lang)
        with pytest.raises(SystemExit):
            main(["chengyun", "create-token", "ghost"])
        assert words in capsys.readouterr().err
    assert translation.get_language() == before


def test_services_keep_the_sites_language_for_what_they_store(monkeypatch):
    """A worker or a demo load started from an English terminal writes Chinese notes, as
    every other part of the platform does; only the commands' own messages follow LANG."""
    from chengyun import cli

    seen = {}

    def fake_execute(argv):
        from django.utils import translation

        seen[argv[1]] = translation.get_language()

    from django.utils import translation

    monkeypatch.setenv("LANG", "en_US.UTF-8")
    monkeypatch.setattr("django.core.management.execute_from_command_line", fake_execute)
    monkeypatch.setattr(cli, "_execute", fake_execute)
    with translation.override("zh-hans"):  # as a process starts: the site's language
        cli.main(["chengyun", "sweep-deadlines"])
        cli.main(["chengyun", "import-reports"])
    assert seen == {"sweep_deadlines": "zh-hans", "import_reports": "en"}
    assert {"serve", "worker", "load_demo", "process_intake"} <= cli.SERVICES


def test_help_on_a_command_takes_its_name_with_dashes(capsys, monkeypatch):
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    main(["chengyun", "help", "train-classifier"])
    out = capsys.readouterr().out
    assert "--rollback" in out and "usage: chengyun train-classifier" in out


def test_a_commands_usage_names_it_with_dashes(capsys, monkeypatch):
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    with pytest.raises(SystemExit):
        main(["chengyun", "import-reports", "--help"])
    assert "usage: chengyun import-reports" in capsys.readouterr().out
