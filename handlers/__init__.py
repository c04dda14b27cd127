"""Bolt listeners: slash commands, block actions and view submissions, one module per activity.

`register_all(app, flows)` attaches every listener and the replay guard. Handlers stay thin: parse, call a flow,
answer; they import no client library but Slack's own (the flows hold the logic).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from handlers.contract import FlowsPort


def register_all(app: Any, flows: FlowsPort) -> None:
    """Attach the replay guard, the `/imagepull` command, the buttons and the modals to a Bolt AsyncApp."""
    # Imported here: bot.flows imports handlers.parse, so importing the listeners at package import would cycle.
    import handlers.actions
    import handlers.commands
    import handlers.replay
    import handlers.views

    handlers.replay.register(app, flows)
    handlers.commands.register(app, flows)
    handlers.actions.register(app, flows)
    handlers.views.register(app, flows)
