"""Tools in the window, against the simulator over real sockets and real MCP servers (the
fault server over stdio, and ``mcp-server-time`` from PyPI): the cards through a whole
turn, parallel calls, the approval row by keyboard, progress, images, Esc during a running
tool, reopening a chat, the composer's per-chat servers, and Settings → Tools."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop_app.core.config import load_config
from desktop_app.core.tools.config import ServerConfig, server_configs, server_table
from desktop_app.core.tools.loop import DECLINED
from desktop_app.core.types import PROVIDERS, ProviderName
from desktop_app.simulator import Fault, SimulatorThread
from desktop_app.ui.chat_view import MessageWidget
from desktop_app.ui.main_window import MainWindow
from desktop_app.ui.tool_card import ToolCard
from tests.gui.util import Windows, run, sim_config, wait_reply
from tests.mcp_servers import fault_server_config, time_server_config


def tools_window(
    windows: Windows, sim: SimulatorThread, home: Path, *servers: ServerConfig
) -> MainWindow:
    config = sim_config(sim, home)
    config.mcp = {"servers": {s.name: server_table(s) for s in servers}}
    return windows.make(config)


def ask(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.composer.set_text(text)
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)


def reply(window: MainWindow) -> MessageWidget:
    widget = window.view.widgets[-1]
    assert widget.role == "assistant"
    return widget


def cards(window: MainWindow) -> list[ToolCard]:
    steps = reply(window).steps
    return list(steps.cards) if steps is not None else []


def always(server: ServerConfig, *tools: str) -> ServerConfig:
    return ServerConfig(
        name=server.name,
        command=server.command,
        args=server.args,
        env=server.env,
        timeout_s=server.timeout_s,
        policies=dict.fromkeys(tools, "always"),
    )


def pid_of(state: Path) -> int:
    return int((state / "pid").read_text(encoding="utf-8"))


def test_a_call_shows_its_card_through_the_whole_turn(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, fault_state: Path
) -> None:
    window = tools_window(windows, sim, rill_home, always(fault_server_config(fault_state), "echo"))
    seen: list[tuple[str, str]] = []

    def on_delta(*_args: object) -> None:
        # the view's slot ran first: the card is there from the call's first piece
        card = cards(window)[-1]
        seen.append((card.name, card.state))

    window.controller.tool_call_delta.connect(on_delta)
    states: list[str] = []
    window.controller.tool_started.connect(lambda *_a: states.append(window.status.text))
    wait_reply(qtbot, window, lambda: ask(qtbot, window, 'call echo with {"text": "hello there"}'))

    assert seen and seen[0] == ("echo", "streaming")
    assert states and states[0].startswith("Running echo (")
    [card] = cards(window)
    assert card.state == "done" and card.server == "fault"
    assert card.preview.text() == "hello there"
    assert json.loads(card.arguments) == {"text": "hello there"}
    assert not card.details.isVisible()  # collapsed until asked
    widget = reply(window)
    assert widget.text().startswith("Tool echo said: hello there")  # the continuation
    assert widget.state == "complete"
    assert window.status.text.startswith("Done")
    # the model's request offered the server's tools and got the result back
    last = sim.chat_requests[-1].json
    assert any(t["function"]["name"] == "echo" for t in last["tools"])
    assert last["messages"][-1]["role"] == "tool"


def test_parallel_calls_get_a_card_each(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, fault_state: Path
) -> None:
    window = tools_window(
        windows,
        sim,
        rill_home,
        always(fault_server_config(fault_state), "echo"),
        always(time_server_config(), "get_current_time"),
    )
    prompt = (
        'call echo with {"text": "first"} and call get_current_time with '
        '{"timezone": "Europe/Paris"} and call echo with {"text": "second"}'
    )
    wait_reply(qtbot, window, lambda: ask(qtbot, window, prompt), timeout=30_000)
    shown = cards(window)
    assert [c.name for c in shown] == ["echo", "get_current_time", "echo"]
    assert all(c.state == "done" for c in shown)
    assert [c.server for c in shown] == ["fault", "time", "fault"]
    assert shown[0].preview.text() == "first" and shown[2].preview.text() == "second"
    assert "Europe/Paris" in shown[1].result
    assert reply(window).text().startswith("Tool echo said: first")


def test_the_approval_row_by_keyboard(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, fault_state: Path
) -> None:
    window = tools_window(windows, sim, rill_home, fault_server_config(fault_state))

    def answer(key: Qt.Key) -> None:
        def row_focused() -> None:
            shown = cards(window)
            assert shown and shown[-1].approval is not None
            assert shown[-1].approval.once.hasFocus()

        qtbot.waitUntil(row_focused, timeout=15_000)
        assert window.status.text == "Waiting for your approval"
        qtbot.keyClick(QApplication.focusWidget(), key)

    # Y: allowed once
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=15_000):
        ask(qtbot, window, 'call echo with {"text": "once"}')
        answer(Qt.Key.Key_Y)
    assert cards(window)[0].state == "done"
    assert window.composer.edit.hasFocus()  # the keyboard goes back to the prompt
    pid = pid_of(fault_state)

    # N: denied; the model is told the user declined
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=15_000):
        ask(qtbot, window, 'call echo with {"text": "no"}')
        answer(Qt.Key.Key_N)
    [card] = cards(window)
    assert card.state == "denied" and card.status_text() == "denied"
    assert reply(window).text().startswith(f"Tool echo said: {DECLINED}")

    # A: allowed, and kept: the next call runs without asking, on the same server process
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=15_000):
        ask(qtbot, window, 'call echo with {"text": "always"}')
        answer(Qt.Key.Key_A)
    assert cards(window)[0].state == "done"
    path = window.services.config.path
    assert path is not None
    qtbot.waitUntil(
        lambda: load_config(path).mcp["servers"]["fault"]["tools"]["echo"]["policy"] == "always",
        timeout=5000,
    )
    asked: list[str] = []
    window.controller.tool_approval_needed.connect(lambda *a: asked.append(str(a[0])))
    wait_reply(qtbot, window, lambda: ask(qtbot, window, 'call echo with {"text": "again"}'))
    assert asked == []
    assert cards(window)[0].state == "done"
    assert pid_of(fault_state) == pid  # a policy change never restarts the server


def test_tab_and_enter_answer_the_row(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, fault_state: Path
) -> None:
    window = tools_window(windows, sim, rill_home, fault_server_config(fault_state))
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=15_000):
        ask(qtbot, window, 'call echo with {"text": "tab"}')
        qtbot.waitUntil(
            lambda: bool(cards(window)) and cards(window)[-1].approval is not None, timeout=15_000
        )
        row = cards(window)[-1].approval
        assert row is not None
        qtbot.waitUntil(row.once.hasFocus, timeout=2000)
        qtbot.keyClick(row.once, Qt.Key.Key_Tab)
        qtbot.keyClick(row.always, Qt.Key.Key_Tab)
        assert row.deny.hasFocus()
        qtbot.keyClick(row.deny, Qt.Key.Key_Return)
    assert cards(window)[0].state == "denied"


def test_progress_and_images_on_the_card(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, fault_state: Path
) -> None:
    window = tools_window(
        windows, sim, rill_home, always(fault_server_config(fault_state), "progress", "image")
    )
    progress: list[str] = []
    window.controller.tool_progress.connect(
        lambda *_a: progress.append(cards(window)[-1].status_text())
    )
    wait_reply(
        qtbot,
        window,
        lambda: ask(qtbot, window, 'call progress with {"steps": 3, "interval_s": 0.2}'),
        timeout=20_000,
    )
    assert any(text.endswith("3 of 3") for text in progress), progress
    assert cards(window)[0].result == "done after 3 steps"

    wait_reply(qtbot, window, lambda: ask(qtbot, window, "call image with {}"), timeout=20_000)
    [card] = cards(window)
    assert card.state == "done" and len(card.images) == 1
    assert card.preview.text() == "a red dot"


def test_esc_stops_a_running_tool_and_the_turn(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, fault_state: Path
) -> None:
    window = tools_window(windows, sim, rill_home, always(fault_server_config(fault_state), "hang"))
    ask(qtbot, window, "call hang with {}")

    def running() -> None:
        shown = cards(window)
        assert shown and shown[0].state == "running"
        assert window.status.text.startswith("Running hang (")

    qtbot.waitUntil(running, timeout=15_000)
    with qtbot.waitSignal(window.controller.turn_ended, timeout=5000):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Escape)
    assert cards(window)[0].state == "stopped"
    assert reply(window).state == "cancelled"
    # the server was told (MCP cancellation) and the window stays usable
    qtbot.waitUntil(lambda: (fault_state / "cancelled").exists(), timeout=5000)
    assert not window.controller.busy
    wait_reply(qtbot, window, lambda: ask(qtbot, window, "/echo still here"))
    assert reply(window).text() == "still here"


def test_reopening_a_chat_shows_its_cards(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, fault_state: Path
) -> None:
    window = tools_window(windows, sim, rill_home, always(fault_server_config(fault_state), "echo"))
    wait_reply(qtbot, window, lambda: ask(qtbot, window, 'call echo with {"text": "kept"}'))
    cid = window.controller.conversation_id
    assert cid is not None
    shown = reply(window).full_text()
    window.new_chat()
    with qtbot.waitSignal(window.controller.conversation_loaded, timeout=5000):
        window.controller.open_conversation(cid)
    [card] = cards(window)
    assert (card.name, card.server, card.state) == ("echo", "fault", "done")
    assert card.preview.text() == "kept"
    assert json.loads(card.arguments) == {"text": "kept"}
    assert reply(window).text().startswith("Tool echo said: kept")
    assert reply(window).full_text() == shown


def test_the_composer_turns_servers_off_for_this_chat(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, fault_state: Path
) -> None:
    window = tools_window(windows, sim, rill_home, always(fault_server_config(fault_state), "echo"))
    button = window.composer.tools
    host = window.tool_host
    assert host is not None
    # the servers start when the window opens; the button counts their tools
    qtbot.waitUntil(lambda: host.state("fault").state == "ready", timeout=15_000)
    count = len(host.state("fault").tools)
    assert count >= 8
    qtbot.waitUntil(lambda: button.isVisible() and button.text() == f"Tools: {count}", timeout=5000)
    button.boxes["fault"].setChecked(False)
    assert button.text() == "Tools: off"
    wait_reply(qtbot, window, lambda: ask(qtbot, window, 'call echo with {"text": "x"}'))
    assert "tools" not in sim.chat_requests[-1].json
    assert cards(window) == []
    # a new chat has every server on again
    chat = window.controller.conversation_id
    assert chat is not None
    window.new_chat()
    assert button.text() == f"Tools: {count}" and button.boxes["fault"].isChecked()
    # the chat keeps its choice: on disk (for the next start), and when it is opened again
    history = window.services.history
    assert history is not None
    qtbot.waitUntil(lambda: history.get_conversation(chat).tools_off == ("fault",), timeout=5000)
    window.controller.open_conversation(chat)
    qtbot.waitUntil(lambda: window.controller.conversation_id == chat, timeout=5000)
    qtbot.waitUntil(lambda: button.text() == "Tools: off", timeout=5000)
    assert not button.boxes["fault"].isChecked()


def test_settings_tools_add_import_toggle_test_and_policy(
    qtbot: QtBot,
    windows: Windows,
    sim: SimulatorThread,
    rill_home: Path,
    fault_state: Path,
    tmp_path: Path,
) -> None:
    window = tools_window(windows, sim, rill_home)
    window.open_settings("Tools")
    dialog = window.settings_dialog
    assert dialog is not None
    page = dialog.tools_page
    assert dialog.tabs.currentWidget() is page
    path = window.services.config.path
    assert path is not None

    # add: the fault server, typed into the form
    fault = fault_server_config(fault_state)
    page.add_server()
    page.f_name.setText("fault")
    page.f_command.setText(fault.command)
    page.f_args.setText(" ".join(fault.args))
    page.f_env.setPlainText(f"PYTHONPATH={fault.env['PYTHONPATH']}")
    page.f_timeout.setValue(7)
    run(qtbot, page.save_server())  # type: ignore[arg-type]
    saved = {s.name: s for s in server_configs(load_config(path))}
    assert saved["fault"].args == fault.args and saved["fault"].timeout_s == 7
    assert page.current == "fault"

    # test: starts it and lists its tools with their descriptions
    run(qtbot, page.test_selected(), timeout=20_000)  # type: ignore[arg-type]
    assert set(page.tool_rows) >= {"echo", "hang", "progress"}
    assert page.state_label.text() == f"Ready with {len(page.tool_rows)} tools"

    # policy: saved at once
    row = page.tool_rows["echo"]
    row.policy.setCurrentIndex(2)
    qtbot.waitUntil(
        lambda: server_configs(load_config(path))[0].policy("echo") == "never", timeout=5000
    )

    # toggle: off in the file, and said so
    page.enabled.setChecked(False)
    qtbot.waitUntil(lambda: not server_configs(load_config(path))[0].enabled, timeout=5000)
    qtbot.waitUntil(lambda: page.state_label.text().startswith("Off"), timeout=5000)

    # import from Claude Desktop: names kept unique, secrets into the keychain
    claude = tmp_path / "claude_desktop_config.json"
    claude.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "fault": {"command": "npx", "args": ["-y", "something"]},
                    "remote": {"type": "http", "url": "http://127.0.0.1:9/mcp"},
                    "github": {"command": "gh-mcp", "env": {"GITHUB_TOKEN": "ghp_secret"}},
                }
            }
        ),
        encoding="utf-8",
    )
    run(qtbot, page.import_from(claude))
    names = [s.name for s in server_configs(load_config(path))]
    assert names == ["fault", "fault-2", "remote", "github"]
    assert "ghp_secret" not in path.read_text(encoding="utf-8")
    assert page.message.text().startswith("Imported 3 server(s)")
    assert page.server_list.count() == 4

    # a file that is not one: a sentence, nothing added
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    run(qtbot, page.import_from(bad))
    assert "not valid JSON" in page.message.text()
    assert len(server_configs(load_config(path))) == 4

    # remove
    page.server_list.setCurrentRow(1)
    run(qtbot, page.remove_selected())  # type: ignore[arg-type]
    assert [s.name for s in server_configs(load_config(path))] == ["fault", "remote", "github"]

    # Save in the dialog keeps the servers
    dialog.save()
    qtbot.waitUntil(lambda: window.status.text == "Settings saved", timeout=5000)
    assert [s.name for s in server_configs(load_config(path))] == ["fault", "remote", "github"]


def test_a_tool_error_reads_as_an_error(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, fault_state: Path
) -> None:
    window = tools_window(windows, sim, rill_home, always(fault_server_config(fault_state), "fail"))
    wait_reply(qtbot, window, lambda: ask(qtbot, window, 'call fail with {"message": "disk full"}'))
    [card] = cards(window)
    assert card.state == "error" and card.status_text().startswith("error · ")
    assert card.is_error and "disk full" in card.result
    assert card.preview.property("state") == "error"
    assert reply(window).text().startswith("Tool fail said: ")  # the model saw it too


def test_esc_while_a_call_streams_in(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, fault_state: Path
) -> None:
    window = tools_window(windows, sim, rill_home, always(fault_server_config(fault_state), "echo"))
    sim.tokens_per_s = 4  # the arguments arrive a few characters at a time
    ask(qtbot, window, 'call echo with {"text": "a long argument that streams in slowly"}')
    qtbot.waitUntil(
        lambda: bool(cards(window)) and cards(window)[0].arguments.startswith('{"te'),
        timeout=15_000,
    )
    assert cards(window)[0].state == "streaming"
    with qtbot.waitSignal(window.controller.turn_ended, timeout=5000):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Escape)
    card = cards(window)[0]
    assert card.state == "stopped" and card.status_text() == "stopped"
    assert len(sim.chat_requests) == 1  # no tool ran, no second request
    assert reply(window).state == "cancelled"
    assert not window.controller.busy


def test_a_server_that_fails_shows_why_and_its_stderr(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    broken = ServerConfig(
        name="broken",
        command=sys.executable,
        args=("-c", "import sys; sys.stderr.write('missing API_KEY\\n'); sys.exit(2)"),
        timeout_s=5,
    )
    window = tools_window(windows, sim, rill_home, broken)
    window.open_settings("Tools")
    dialog = window.settings_dialog
    assert dialog is not None
    page = dialog.tools_page
    assert page.current == "broken"
    run(qtbot, page.test_selected(), timeout=20_000)  # type: ignore[arg-type]
    assert page.state_label.text().startswith("Failed")
    assert page.state_label.property("state") == "failed"
    assert page.stderr.isVisibleTo(page)
    assert "missing API_KEY" in page.stderr.toPlainText()
    assert page.message.text() == "broken did not start."


def test_a_restart_after_a_tool_round_shows_the_card_once_and_runs_nothing_again(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, fault_state: Path
) -> None:
    window = tools_window(windows, sim, rill_home, always(fault_server_config(fault_state), "echo"))
    sim.script(Fault(), Fault(drop_after=25))  # the answer after the tool breaks once
    started: list[str] = []
    window.controller.tool_started.connect(lambda *a: started.append(str(a[0])))
    restarted: list[str] = []
    window.controller.restarted.connect(restarted.append)
    wait_reply(
        qtbot, window, lambda: ask(qtbot, window, 'call echo with {"text": "just once"}'), 20_000
    )
    assert restarted  # the answer started again …
    assert len(started) == 2 and started[0] == started[1]  # … and its call was shown again
    [card] = cards(window)  # once
    assert card.state == "done" and card.preview.text() == "just once"
    assert reply(window).text().startswith("Tool echo said: just once")
    assert len(sim.chat_requests) == 3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_parallel_cards_in_each_protocol(
    qtbot: QtBot,
    windows: Windows,
    sim: SimulatorThread,
    rill_home: Path,
    fault_state: Path,
    provider: ProviderName,
) -> None:
    """Gemini and Ollama stream no call ids: the cards still match their calls."""
    window = tools_window(windows, sim, rill_home, always(fault_server_config(fault_state), "echo"))
    profile = window.services.config.profiles["Simulator"]
    window.services.config.profiles["Simulator"] = replace(
        profile, provider=provider, base_url=sim.base_url(provider)
    )
    assert window.services.secrets is not None
    window.services.secrets.set("Simulator", "sim-key", provider=provider)
    prompt = 'call echo with {"text": "one"} then call echo with {"text": "two"}'
    wait_reply(qtbot, window, lambda: ask(qtbot, window, prompt), timeout=20_000)
    shown = cards(window)
    assert [(c.name, c.state, c.preview.text()) for c in shown] == [
        ("echo", "done", "one"),
        ("echo", "done", "two"),
    ]
    assert reply(window).text().startswith("Tool echo said: one")
    assert {r.protocol for r in sim.chat_requests} == {provider}


def test_settings_adds_a_streamable_http_server_with_a_secret_header(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, fault_http: ServerConfig
) -> None:
    window = tools_window(windows, sim, rill_home)
    window.open_settings("Tools")
    dialog = window.settings_dialog
    assert dialog is not None
    page = dialog.tools_page
    page.add_server()
    page.f_name.setText("remote")
    page.f_kind.setCurrentIndex(1)
    assert page.f_url.isVisibleTo(page) and not page.f_command.isVisibleTo(page)
    page.f_url.setText(fault_http.url)
    page.f_headers.setPlainText("Authorization: Bearer s3cret-value\nX-Team: blue")
    run(qtbot, page.save_server())  # type: ignore[arg-type]
    path = window.services.config.path
    assert path is not None
    text = path.read_text(encoding="utf-8")
    assert "s3cret-value" not in text and "<keychain>" in text and "blue" in text
    [server] = server_configs(load_config(path))
    assert server.url == fault_http.url and server.transport == "http"
    # the form shows the reference, never the secret
    assert "s3cret-value" not in page.f_headers.toPlainText()
    run(qtbot, page.test_selected(), timeout=20_000)  # type: ignore[arg-type]
    assert page.state_label.text().startswith("Ready with ")
    assert "echo" in page.tool_rows

    # a bad line is a sentence, and nothing is saved
    page.f_headers.setPlainText("no separator here")
    assert page.save_server() is None
    assert page.message.text() == "Not saved: Headers: line 1 is not NAME:value."


def test_esc_at_the_approval_row_stops_the_turn(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, fault_state: Path
) -> None:
    window = tools_window(windows, sim, rill_home, fault_server_config(fault_state))
    ask(qtbot, window, 'call echo with {"text": "never mind"}')

    def row_focused() -> None:
        shown = cards(window)
        assert shown and shown[-1].approval is not None
        assert shown[-1].approval.once.hasFocus()

    qtbot.waitUntil(row_focused, timeout=15_000)
    with qtbot.waitSignal(window.controller.turn_ended, timeout=5000):
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Escape)
    [card] = cards(window)
    assert card.state == "stopped" and card.approval is None
    assert reply(window).state == "cancelled"
    assert window.controller.waiting_for_approval == []
    assert len(sim.chat_requests) == 1  # nothing ran, nothing more was asked


def test_two_calls_asking_in_one_round_are_answered_in_turn(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, fault_state: Path
) -> None:
    window = tools_window(windows, sim, rill_home, fault_server_config(fault_state))

    def row_focused(index: int) -> None:
        shown = cards(window)
        assert len(shown) == 2 and shown[index].approval is not None
        assert shown[index].approval.once.hasFocus()

    with qtbot.waitSignal(window.controller.conversation_synced, timeout=20_000):
        ask(qtbot, window, 'call echo with {"text": "yes"} and call echo with {"text": "no"}')
        qtbot.waitUntil(lambda: row_focused(0), timeout=15_000)
        assert cards(window)[1].approval is None  # asked one at a time
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Y)
        qtbot.waitUntil(lambda: row_focused(1), timeout=15_000)
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_N)
    first, second = cards(window)
    assert (first.state, first.preview.text()) == ("done", "yes")
    assert second.state == "denied"
    assert reply(window).text().startswith(f"Tool echo said: yes\n\nTool echo said: {DECLINED}")
