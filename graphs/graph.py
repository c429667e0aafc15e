"""The copilot graph.

    START -> route --(reply)--------------------------------------------> reply -> END
                   --(read-only tool)----------------------------------> run_tool -> END
                   --(state-changing tool)--> propose -> await_decision -> execute -> END
                                                          (interrupt)  --(rejected/expired)-> END
    run_tool --(a request of two steps)--> route_next --> reply | run_tool | propose | END

A request of two steps ("predict and explain", "check drift at VA Long Beach and retrain
if it drifted") is routed one step at a time: when the router says the request has more
steps (`Route.more`), it is asked again after a read-only step with what this turn did as
typed facts (copilot.facts.Step, from tool results; never text), at most MAX_STEPS times;
a state-changing step is still only a proposal.

`await_decision` does nothing before `interrupt()` (the node re-runs on resume) and, once
resumed, reads the decision from the action store: a resume value, user text or LLM
output can never stand in for an approval. An edit leaves the action pending: the node
says so and the graph waits again, for the approval of the edited arguments. `execute`
goes through `ActionStore.execute`, the only caller of the state-changing tools.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Checkpointer, interrupt
from pydantic import ValidationError
from pydantic_ai.usage import RunUsage

from copilot import narration
from copilot.actions import STATE_CHANGING, ActionError, PendingAction
from copilot.deps import Deps
from copilot.facts import Focus, Memory, RouteRequest, step
from copilot.llm.narrator import RETOLD, TEMPLATE_MARK, narrate, retell
from copilot.llm.router import route
from copilot.units import UnitConversion, said_back
from graphs.state import ChatState
from tools.catalog import READ_ONLY
from tools.errors import ToolError

MAX_STEPS = 3


def _say(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "assistant", "content": text}]}


async def route_turn(state: ChatState, runtime: Runtime[Deps]) -> dict[str, Any]:
    remembered = state.get("memory", {})
    decided = await route(
        runtime.context.agents.router, RouteRequest(state["text"], Memory(**remembered))
    )
    # a patient being described lasts one question: kept when this reply asks about it
    memory = {
        k: v
        for k, v in remembered.items()
        if k not in {"pending_patient", "asked_for", "pending_tool"}
    }
    if decided.pending is not None:
        memory |= {
            "pending_patient": decided.pending.patient,
            "asked_for": list(decided.pending.asked_for),
            "pending_tool": decided.pending.tool,
        }
    return {
        "memory": memory,
        "route": decided.model_dump(exclude={"usage"}),
        "action_id": None,
        "steps": [],
        "messages": [{"role": "user", "content": state["text"]}],
        "usage": [{"agent": "router", **decided.usage}],
    }


async def route_next(state: ChatState, runtime: Runtime[Deps]) -> dict[str, Any]:
    """The next step of this turn's request, given the steps already done."""
    memory = Memory(**state.get("memory", {}))
    request = RouteRequest(state["text"], memory, state.get("steps", []))
    decided = await route(runtime.context.agents.router, request)
    return {
        "route": decided.model_dump(exclude={"usage"}),
        "action_id": None,
        "usage": [{"agent": "router", **decided.usage}],
    }


def after_run_tool(state: ChatState) -> Literal["route_next", "__end__"]:
    steps = state.get("steps", [])
    if not steps or len(steps) >= MAX_STEPS:
        return "__end__"
    if steps[-1]["facts"].get("failed") or steps[-1]["facts"].get("insufficient"):
        return "__end__"  # nothing to build on: no result, or no risk for this patient
    return "route_next" if state["route"].get("more") else "__end__"


def after_route_next(state: ChatState) -> Literal["reply", "run_tool", "propose", "__end__"]:
    decided = state["route"]
    if decided["tool"] is None and not (decided["reply"] or "").strip():
        return "__end__"  # nothing left of the request
    done = [(s["tool"], s["arguments"]) for s in state.get("steps", [])]
    if (decided["tool"], decided["arguments"]) in done:  # a model repeating itself: stop
        return "__end__"
    return after_route(state)


async def _narrate(
    context: Deps, tool: str, result: dict[str, Any], focus: Focus | None = None
) -> dict[str, Any]:
    """The assistant's words for a tool result, and what the narrating LLM spent. A
    question about specific drivers is answered with the numbers, computed in code."""
    started, spent = time.perf_counter(), RunUsage()
    if narration.insufficient(result):  # the refusal is said in code, with no risk in it
        return _say(narration.NARRATORS[tool](result))
    focused = narration.focused_answer(tool, result, focus)
    if focused is not None:
        return _say(focused)
    if tool == "explain_prediction" and context.agents.narrator is not None:
        text, _ = await narrate(context.agents.narrator, result, context.tools.card, spent)
    elif tool in RETOLD:
        template = (
            narration.action_outcome(result)
            if tool in STATE_CHANGING
            else narration.NARRATORS[tool](result)
        )
        text = await retell(context.agents.result_narrator, result, template, spent)
    else:
        return _say(narration.NARRATORS[tool](result))
    if context.agents.narrator is None and context.agents.result_narrator is None:
        return _say(text)
    usage = {
        "agent": "narrator",
        "verified": not text.endswith(TEMPLATE_MARK),  # else the template, after the retries
        "requests": spent.requests,
        "input_tokens": spent.input_tokens,
        "output_tokens": spent.output_tokens,
        "seconds": round(time.perf_counter() - started, 4),
    }
    return {**_say(text), "usage": [usage]}


def after_route(state: ChatState) -> Literal["reply", "run_tool", "propose"]:
    tool = state["route"]["tool"]
    if tool is None:
        return "reply"
    return "propose" if tool in STATE_CHANGING else "run_tool"


async def reply(state: ChatState) -> dict[str, Any]:
    return _say(state["route"]["reply"] or "I can't do that.")


def _remember(
    tool: str, arguments: dict[str, Any], result: dict[str, Any], memory: dict[str, Any]
) -> dict[str, Any]:
    if tool == "predict_risk":
        question = _patient_question(memory)
        return {
            "patient": arguments["patient"],
            "prediction_id": result["prediction_id"],
            "last_tool": tool,
            **({"last_question": question} if question else {}),
        }
    if tool == "explain_prediction" and arguments.get("patient") is not None:
        return {
            "patient": arguments["patient"],
            "prediction_id": memory.get("prediction_id"),
            "last_tool": tool,
        }
    memory = {k: v for k, v in memory.items() if k != "last_arguments"}
    if tool == "what_if" and arguments.get("prediction_id") == memory.get("prediction_id"):
        return {**memory, "last_tool": tool, "last_changes": arguments.get("changes")}
    if tool in {"what_if", "explain_prediction"}:  # about a patient: remembered as one
        return {**memory, "last_tool": tool}
    # a follow-up that changes one argument ("and for Hungary?") repeats this call
    return {**memory, "last_tool": tool, "last_arguments": arguments}


def _patient_question(memory: dict[str, Any]) -> dict[str, Any] | None:
    """The last question asked about the last patient (an explanation, a what-if with its
    changes, a counterfactual), or the one kept from before it: what "now for her" asks of
    the next patient. Typed arguments of calls that ran, never text."""
    tool = memory.get("last_tool")
    if tool in {"explain_prediction", "counterfactual"}:
        return {"tool": tool}
    if tool == "what_if" and memory.get("last_changes"):
        return {"tool": tool, "changes": memory["last_changes"]}
    kept = memory.get("last_question")
    return kept if isinstance(kept, dict) else None


async def run_tool(state: ChatState, runtime: Runtime[Deps]) -> dict[str, Any]:
    name, arguments = state["route"]["tool"], state["route"]["arguments"]
    tool = READ_ONLY[name]
    try:
        output = await tool.run(runtime.context.tools, tool.input_model.model_validate(arguments))
    except (ToolError, ValidationError) as error:
        failed = step(name, arguments, None)
        return {"steps": [*state.get("steps", []), failed], **_say(f"I could not do that: {error}")}
    result = output.model_dump(mode="json")
    memory = _remember(name, arguments, result, state.get("memory", {}))
    focus = state["route"].get("focus")
    narrated = await _narrate(
        runtime.context, name, result, Focus.model_validate(focus) if focus else None
    )
    return {
        "tool_calls": [{"tool": name, "arguments": arguments, "result": result}],
        "memory": memory,
        "steps": [*state.get("steps", []), step(name, arguments, result)],
        **_with_conversions(
            narrated,
            state["route"].get("conversions") or [],
            state["route"].get("not_in_model") or [],
        ),
    }


def _with_conversions(
    narrated: dict[str, Any], conversions: list[Any], not_in_model: list[str]
) -> dict[str, Any]:
    """The answer, followed by the units it converted ("6.2 mmol/l -> 240 mg/dl"), from the
    route's typed conversions, and what the user named that the model does not take."""
    told = said_back([UnitConversion.model_validate(c) for c in conversions])
    if not_in_model:
        unused = ", ".join(not_in_model)
        told = f"{told} Not among the model's inputs, so not used: {unused}.".strip()
    if not told:
        return narrated
    (message,) = narrated["messages"]
    return {**narrated, "messages": [{**message, "content": f"{message['content']} {told}"}]}


async def propose(state: ChatState, runtime: Runtime[Deps]) -> dict[str, Any]:
    name, arguments = state["route"]["tool"], state["route"]["arguments"]
    try:
        action = runtime.context.actions.propose(
            state["conversation_id"], name, arguments, requested_by=state["user"]
        )
    except ActionError as error:  # invalid, or the registry or audit log refused it
        return {"action_id": None, **_say(f"I could not propose that: {error}")}
    proposal = {"action_id": action.id, "status": action.status}
    return {
        "action_id": action.id,
        "tool_calls": [{"tool": name, "arguments": action.arguments, "result": proposal}],
        **_say(narration.action_proposed(action.model_dump(mode="json"))),
    }


def after_propose(state: ChatState) -> Literal["await_decision", "__end__"]:
    return "await_decision" if state.get("action_id") else "__end__"


def interrupt_payload(action: PendingAction) -> dict[str, Any]:
    """What a person deciding sees (the approval card), from the persisted action."""
    return {
        "action_id": action.id,
        "tool": action.tool,
        "arguments": action.arguments,
        "summary": action.summary,
        "preview": action.preview.model_dump() if action.preview else None,
        "requested_by": action.requested_by,
        "expires_at": action.expires_at.isoformat(),
    }


async def await_decision(state: ChatState, runtime: Runtime[Deps]) -> dict[str, Any]:
    actions = runtime.context.actions
    action_id = state["action_id"]
    assert action_id is not None  # after_propose routes here only with an action
    interrupt(interrupt_payload(actions.get(action_id)))  # reading is side-effect free
    actions.expire_overdue()
    action = actions.get(action_id)
    if action.status == "pending" and action.edited_by is not None:
        # resumed after a decision that left it pending: an edit, which runs nothing
        told = narration.action_edited(action.model_dump(mode="json"), four_eyes=actions.four_eyes)
        return _say(told)
    return {}


def after_decision(
    state: ChatState, runtime: Runtime[Deps]
) -> Literal["await_decision", "execute", "narrate_outcome"]:
    action = runtime.context.actions.get(state["action_id"] or "")
    if action.status == "pending":
        return "await_decision"  # resumed without a decision: wait again
    return "execute" if action.status == "approved" else "narrate_outcome"


async def execute(state: ChatState, runtime: Runtime[Deps]) -> dict[str, Any]:
    action = await runtime.context.actions.execute(state["action_id"] or "", runtime.context.tools)
    return {
        "tool_calls": [
            {"tool": action.tool, "arguments": action.arguments, "result": action.result}
        ],
        **await _narrate(runtime.context, action.tool, action.model_dump(mode="json")),
    }


async def narrate_outcome(state: ChatState, runtime: Runtime[Deps]) -> dict[str, Any]:
    action = runtime.context.actions.get(state["action_id"] or "")
    return _say(narration.action_outcome(action.model_dump(mode="json")))


def build_graph(checkpointer: Checkpointer = None) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The compiled copilot graph (checkpoints in the copilot database when given)."""
    graph = StateGraph(ChatState, context_schema=Deps)
    for node in (
        route_turn,
        route_next,
        reply,
        run_tool,
        propose,
        await_decision,
        execute,
        narrate_outcome,
    ):
        graph.add_node(node.__name__, node)
    graph.add_edge(START, "route_turn")
    graph.add_conditional_edges("route_turn", after_route)
    graph.add_conditional_edges("route_next", after_route_next)
    graph.add_edge("reply", END)
    graph.add_conditional_edges("run_tool", after_run_tool)
    graph.add_conditional_edges("propose", after_propose)
    graph.add_conditional_edges("await_decision", after_decision)
    graph.add_edge("execute", END)
    graph.add_edge("narrate_outcome", END)
    return graph.compile(checkpointer=checkpointer)
