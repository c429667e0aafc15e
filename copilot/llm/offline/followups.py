"""Follow-ups that repeat the last read-only call with one argument changed: "and for
Hungary?" after a drift check or a list of runs, "same for women" after a cohort's
accuracy, "only the last one" after runs, "and the last three?" after a comparison,
"since October?" after a history, "and for row 21?" after a row's counterfactual.

A follow-up here is short, goes on from the last answer (it opens with "and", "same",
"what about", "only"... or is nothing but a slot), and names a slot the last tool takes:
a site, a start date, a count, a cohort's conditions, a metric. The call is the last one
(Memory.last_tool and Memory.last_arguments, typed arguments of a call that ran, never
text) with that slot replaced; the rest is kept. A clause with a word of another request
(why, retrain, a patient...) is no such follow-up: the other frames read it.
"""

from __future__ import annotations

import re
from typing import Any

from copilot.facts import Memory
from copilot.llm.offline import patterns as rx
from copilot.llm.offline.cohorts import changes_a_group, conditions_in, row_ids_in
from copilot.llm.offline.corrections import is_correction, without_old_values
from copilot.llm.offline.grammar import Reading, read
from copilot.llm.offline.monitoring import metric_in
from copilot.llm.offline.patients import parse_patient
from model_service.cards import DatasetCard

COHORT_TOOLS = frozenset(
    {
        "describe_data",
        "model_performance",
        "model_mistakes",
        "feature_importance",
        "feature_interactions",
    }
)
REPEATABLE = COHORT_TOOLS | {
    "check_drift",
    "list_runs",
    "compare_runs",
    "monitoring_history",
    "counterfactual",
}

_LEAD = re.compile(
    r"^(?:and|but|now|ok|okay|then|same|the same|also|what about|how about|what of|only|just|"
    r"likewise|similarly|again|repeat|do the same|do that|now do)\b"
)
# Cues that make a clause a request of its own, whatever came before.
_OWN_REQUEST = ("why", "risk", "retrain", "promote", "rollback", "help", "pronoun", "inputs")
_ONE = re.compile(r"\b(?:the )?(?:last|latest|newest|most recent) one\b|\bjust one\b")
_EVERYONE = re.compile(
    r"\b(?:everyone|everybody|all (?:the )?(?:patients|rows|sites|data)|overall|in general|"
    r"every site|all of them|the whole (?:data ?set|cohort))\b"
)
_MAX_WORDS = 9


def repeat_call(
    reading: Reading, card: DatasetCard, memory: Memory
) -> tuple[str, dict[str, Any]] | None:
    """The last call with the slot this follow-up names replaced, or None."""
    last, before = memory.last_tool, dict(memory.last_arguments or {})
    text = reading.text
    if last not in REPEATABLE or len(text.split()) > _MAX_WORDS:
        return None
    reading, goes_on = _going_on(reading, card)
    if not _follows_up(reading, last, goes_on, card):
        return None
    if last == "counterfactual":  # only a row's: a patient's is the patient frames'
        return _another_row(reading) if "row_id" in before else None
    if last in COHORT_TOOLS:  # a group said alone ("patients over 110") is a new question
        return _cohort(last, before, reading, card) if goes_on else None
    arguments = _slots(last, before, reading)
    return None if arguments is None else (last, arguments)


def _going_on(reading: Reading, card: DatasetCard) -> tuple[Reading, bool]:
    """The clause as it goes on from the last answer, and whether it says so: a correction
    ("sorry, I meant the VA ones", "no, Hungary, not Switzerland") is read without the
    value it replaces."""
    if is_correction(reading.text):
        return read(without_old_values(reading.text), card), True
    return reading, bool(_LEAD.search(reading.text))


def _follows_up(reading: Reading, last: str, goes_on: bool, card: DatasetCard) -> bool:
    """Whether the clause is a follow-up of the last call rather than a request of its own
    (a short one that says nothing but a slot, or one that goes on from the last answer)."""
    if not goes_on and len(reading.text.split()) > 3:
        return False
    if reading.has(*_OWN_REQUEST) or _another_tool(reading, last):
        return False
    # "and if none of them had diabetes?": a what-if on the group, not the same question
    return not (last in COHORT_TOOLS and changes_a_group(reading.text, card))


def _another_tool(reading: Reading, last: str) -> bool:
    """Whether the clause names another tool's object ("and the drift?" after runs)."""
    if reading.has("drift") and last not in {"check_drift", "monitoring_history"}:
        return True
    if reading.has("runs") and last not in {"list_runs", "compare_runs"}:
        return True
    return reading.has("compare") and last != "compare_runs"


def _slots(last: str, before: dict[str, Any], reading: Reading) -> dict[str, Any] | None:
    return _SLOTS[last](before, reading)


def _drift(_: dict[str, Any], reading: Reading) -> dict[str, Any] | None:
    """check_drift takes exactly one of a site and a start date."""
    if reading.sites:
        return {"site": reading.sites[0]}
    return {"since": reading.since} if reading.since else None


def _runs(before: dict[str, Any], reading: Reading) -> dict[str, Any] | None:
    """list_runs: a site, all sites, the last one, or a count."""
    if reading.sites:
        return {**before, "site": reading.sites[0]}
    if reading.all_sites:
        return {k: v for k, v in before.items() if k != "site"}
    if _ONE.search(reading.text) or reading.singular_run:
        return {**before, "limit": 1}
    return {**before, "limit": reading.count} if reading.count else None


def _compared(_: dict[str, Any], reading: Reading) -> dict[str, Any] | None:
    """compare_runs: run ids, or the last N."""
    if len(reading.run_ids) >= 2:
        return {"run_ids": reading.run_ids[:5]}
    count = reading.count or _bare_count(reading.text)
    return {"last": min(max(count, 2), 5)} if count else None


def _history(before: dict[str, Any], reading: Reading) -> dict[str, Any] | None:
    """monitoring_history: a site (or all sites), a start date, a metric."""
    changed: dict[str, Any] = {}
    if reading.sites:
        changed["site"] = reading.sites[0]
    if reading.since:
        changed["since"] = reading.since
    metric = metric_in(reading.text)
    if metric:
        changed["metric"] = metric
    if not changed and not reading.all_sites:
        return None
    kept = {k: v for k, v in before.items() if not (k == "site" and reading.all_sites)}
    return {**kept, **changed}


_SLOTS = {
    "check_drift": _drift,
    "list_runs": _runs,
    "compare_runs": _compared,
    "monitoring_history": _history,
}


def _bare_count(text: str) -> int | None:
    """ "and the three before?", "the last 4?": a small count said alone."""
    found = rx.search(r"\b(\d)\b", text)
    return int(found.group(1)) if found else None


def _cohort(
    last: str, before: dict[str, Any], reading: Reading, card: DatasetCard
) -> tuple[str, dict[str, Any]] | None:
    """The same cohort question on another group: the conditions said replace those on the
    same features ("same for women" after "accuracy on men over 60": women over 60)."""
    conditions, _ = conditions_in(reading.text, card)
    everyone = bool(_EVERYONE.search(reading.text))
    if not conditions and not everyone:
        return None
    if len(parse_patient(reading.text, card, pronouns=False)) >= 3:
        return None  # a patient, not a group
    said = {c["feature"] for c in conditions}
    kept = [] if everyone else [c for c in before.get("where", []) if c.get("feature") not in said]
    arguments = {**before, "where": [*kept, *conditions]}
    if not arguments["where"]:
        arguments.pop("where")
    return last, arguments


def _another_row(reading: Reading) -> tuple[str, dict[str, Any]] | None:
    """A row's counterfactual again for another row ("and for row 21?" after row 15's)."""
    rows = row_ids_in(reading.text)
    return ("counterfactual", {"row_id": rows[0]}) if len(rows) == 1 else None
