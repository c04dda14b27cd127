"""Bolt listeners: slash commands, block actions, view submissions and the App Home tab, one module per activity.

`register_all(app, flows)` attaches every listener and the replay guard. Handlers stay thin: parse (the grammar in
`bot.chatops`), call the flows through their port (`bot.chatops.port.FlowsPort`), answer. They import no client
library but Slack's own, and never the flows' implementation: the composition root hands the flows in.
"""

from __future__ import annotations

from typing import Any

import handlers.buttons
import handlers.home
import handlers.modals
import handlers.replay
import handlers.slash_command
from bot.chatops.port import FlowsPort


def register_all(app: Any, flows: FlowsPort) -> None:
    """Attach the replay guard, the `/imagepull` command, the buttons and the modals to a Bolt AsyncApp."""
    handlers.replay.register(app, flows)
    handlers.slash_command.register(app, flows)
    handlers.buttons.register(app, flows)
    handlers.modals.register(app, flows)
    handlers.home.register(app, flows)
