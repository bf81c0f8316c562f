"""Text from people and scripts never reaches a terminal as control sequences: a note that sets
the window title and clears the screen, a refused tag, a script's log line, a metric name. The
record keeps what was given; `nkd show`, `nkd ps`, `nkd logs` and the TUI show it harmlessly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import Workspace, nkd, wait_until

from core.capture.records import RecordError, parse_record
from core.store import FINAL
from core.util.text import log_line, visible

HOSTILE = "hello \x1b]0;PWNED-TITLE\x07\x1b[2J\x9b31m\r"
SCRIPT = (
    "import json\n"
    "print('plain line', flush=True)\n"
    "print('\\x1b]0;PWNED-TITLE\\x07\\x1b[2Jcleared \\x1b[31mred\\x1b[0m', flush=True)\n"
    "print('@nkd ' + json.dumps({'epoch': 1, 'train_loss': 0.5}), flush=True)\n"
)


def test_visible_and_log_line_leave_no_control_character() -> None:
    shown = visible(HOSTILE, keep="")
    assert shown == "hello ^[]0;PWNED-TITLE^G^[[2J<9b>31m^M"
    assert log_line("\x1b]0;PWNED-TITLE\x07\x1b[2Jcleared \x1b[31mred\x1b[0m") == "cleared red"
    assert log_line("10%\r55%\r100%") == "100%"
    assert visible("tab\tand\nnewline") == "tab\tand\nnewline"  # kept where asked


def test_a_metric_name_with_control_characters_is_refused() -> None:
    for payload in ('{"name": "sdr\\u001b[2J", "value": 1}',
                    '{"epoch": 1, "val\\u001b]0;x\\u0007": 2.0}'):
        with pytest.raises(RecordError, match="control characters"):
            parse_record("@nkd " + payload, Path("."), (Path("."),))


@pytest.fixture
def hostile_run(ws: Workspace) -> str:
    script = ws.root / "hostile.py"
    script.write_text(SCRIPT)
    ws.registry.write_text(ws.registry.read_text() + f'\n[experiments.hostile]\ncommand = '
                           f'["{sys.executable}", "{script}"]\n')
    assert nkd(ws, "run", "hostile") == 0
    store = ws.store()
    run_id = store.latest_run("hostile")["id"]
    wait_until(lambda: store.get_run(run_id)["status"] in FINAL, 30, "the end")
    store.close()
    assert nkd(ws, "note", run_id, HOSTILE) == 0
    return run_id


def test_show_ps_logs_and_refusals_print_no_control_sequence(
        ws: Workspace, hostile_run: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = hostile_run
    store = ws.store()
    assert store.get_run(run_id)["note"] == HOSTILE.strip()  # the record keeps what was given
    store.close()
    capsys.readouterr()
    assert nkd(ws, "show", run_id) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert "hello ^[]0;PWNED-TITLE^G^[[2J" in out
    assert nkd(ws, "ps", "--all") == 0
    assert "\x1b" not in capsys.readouterr().out
    assert nkd(ws, "logs", run_id) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "cleared red" in out
    assert nkd(ws, "logs", run_id, "--raw") == 0
    assert "\x1b]0;PWNED-TITLE" in capsys.readouterr().out  # asked for as written
    assert nkd(ws, "tag", run_id, " \x1b]0;PWNED\x07") == 2  # refused, and echoed harmlessly
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "\x07" not in err


async def test_the_tui_draws_the_note_and_the_log_without_their_sequences(
        ws: Workspace, hostile_run: str) -> None:
    from nkd_tui.app import make_app
    from nkd_tui.log_pane import LogPane

    app = make_app(ws.registry, poll=False)
    async with app.run_test(size=(120, 36)) as pilot:
        for _ in range(3):  # the first paint, then the poll that follows it
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
        app.refresh_data()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert app.run_id == hostile_run
        lines = app.query_one(LogPane).lines
        assert any("cleared red" in line for line in lines)
        assert not any("\x1b" in line for line in lines)
        notes = str(app.query_one("#run-notes").content)
        assert "PWNED-TITLE" in notes and "\x1b" not in notes and "\x07" not in notes
        screen = app.export_screenshot()
        assert "\x1b" not in screen and "\x07" not in screen
