"""What an Auto turn shows: its stages in the status bar (a progress bar and a message)
and its route in the reply's details; an escalated attempt's notice on the new version."""

from __future__ import annotations

from desktop_app.core.events import AutoRoute
from desktop_app.ui.chat_view import ChatView
from desktop_app.ui.controller import ChatController
from desktop_app.ui.status_bar import StatusPanel


class AutoPresenter:
    """Connects a controller's Auto signals to the chat view and the status bar."""

    def __init__(self, controller: ChatController, view: ChatView, status: StatusPanel) -> None:
        self.controller = controller
        self.view = view
        self.status = status
        self.active = False
        controller.turn_started.connect(self._turn_started)
        controller.auto_stage.connect(self._stage)
        controller.auto_route.connect(self._route)
        controller.restarted.connect(self._restarted)
        controller.finished.connect(self._finished)
        self._complete = ""

    def _turn_started(self, _mode: str, _prompt: str) -> None:
        self.active = False
        self._complete = ""

    def _stage(self, stage: str, progress: float, message: str, attempt: int) -> None:
        self.active = True
        self.status.show_auto_stage(stage, progress, message)
        if stage == "complete":
            tries = f" · {attempt} attempts" if attempt > 1 else ""
            self._complete = f"Done in {message} with Auto{tries}"

    def _finished(self, _response: object) -> None:
        """The whole Auto turn's time (every stage and attempt), not only the last answer's."""
        if self.active and self._complete:
            self.status.show_message(self._complete)

    def _route(self, route: object, message_id: object) -> None:
        # only an Auto turn sends a route: its modules are loaded by then
        from desktop_app.core.routing.auto import AutoTurn, describe_route, describe_why

        assert isinstance(route, AutoRoute)
        shown = message_id if isinstance(message_id, int) else None
        self.view.set_route(shown, describe_route(route), describe_why(route), streaming=True)
        turn = self.controller.turn
        if route.kept is None or not isinstance(turn, AutoTurn):
            return
        ids = turn.attempt_message_ids
        for index, attempt in enumerate(route.attempts):
            if index == route.kept or index >= len(ids) or ids[index] is None:
                continue
            score = "not scored" if attempt.score is None else f"quality {attempt.score}/10"
            kept = route.attempts[route.kept].model
            line = (
                f"Auto: attempt {index + 1} of {len(route.attempts)} · {attempt.model} · {score}"
                f" · the answer of {kept} was kept"
            )
            self.view.set_route(ids[index], line, describe_why(route))

    def _restarted(self, reason: str) -> None:
        widget = self.view.stream_widget
        if self.active and widget is not None:
            widget.set_notice(f"Auto: {reason}. The earlier answer is kept as an earlier version.")
