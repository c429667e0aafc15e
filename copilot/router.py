"""The router: a PydanticAI agent that turns one user turn into one typed tool call.

Every tool is an output tool named as CONTRACTS.md names it, with the tool's input model
as its schema and its docstring as its description; plain text is a reply. Arguments that
fail validation go back to the model as a retry with the validation message.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_ai import Agent, ToolOutput
from pydantic_ai.exceptions import UnexpectedModelBehavior

from copilot.actions import STATE_CHANGING
from copilot.offline import Memory
from copilot.providers import context_block
from prompts import load
from tools.catalog import READ_ONLY

ROUTER_RETRIES = 2


class Route(BaseModel):
    """What to do with a turn: call `tool` with `arguments`, or say `reply`."""

    tool: str | None
    arguments: dict[str, Any] = {}
    reply: str | None = None


def _tools() -> dict[type[BaseModel], tuple[str, str]]:
    described = {
        model: (name, tool.description)
        for name, tool in READ_ONLY.items()
        for model in [tool.input_model]
    }
    for name, spec in STATE_CHANGING.items():
        described[spec.input_model] = (
            name,
            f"Propose to {spec.name.replace('_', ' ')} "
            "(a person approves before anything changes).",
        )
    return described


def build_router(model: Any) -> Agent[None, Any]:
    """The routing agent over `model` (offline or a real LLM)."""
    outputs: list[Any] = [
        ToolOutput(input_model, name=name, description=description)
        for input_model, (name, description) in _tools().items()
    ]
    return Agent(
        model, output_type=[*outputs, str], instructions=load("router"), retries=ROUTER_RETRIES
    )


async def route(router: Agent[None, Any], text: str, memory: Memory) -> Route:
    """The tool call (or reply) for one user turn."""
    try:
        result = await router.run(text, instructions=context_block(memory))
    except UnexpectedModelBehavior as error:  # retries used up: say so instead of failing
        return Route(tool=None, reply=f"I could not turn that into a valid request ({error}).")
    output = result.output
    if isinstance(output, str):
        return Route(tool=None, reply=output)
    name, _ = _tools()[type(output)]
    return Route(tool=name, arguments=output.model_dump(mode="json", exclude_none=True))
