"""The copilot's LangGraph state machine: route -> tool -> narrate, or route -> propose ->
await a human decision (interrupt) -> execute -> narrate."""
