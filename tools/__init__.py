"""Typed tools over explicit clients: what the copilot's LLM (and anyone else) may call.

Each tool is an async function taking a `ToolContext` and a Pydantic input model and
returning a Pydantic output model; its docstring is what an LLM reads. No LLM and no
LangGraph here. State-changing tools arrive with the pending-action store (copilot/).
"""
