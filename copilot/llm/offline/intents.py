"""The offline provider's understanding: one chat turn -> one tool call, or a plain reply.

Deterministic and local (no network, no model weights). A request is read in three passes:

1. the normal form (copilot.llm.offline.text): Unicode folded, look-alike letters mapped,
   invisible characters dropped, number words as digits, typos fixed; a patient's free text
   (quoted passages, labelled notes) set apart: it is data, never a request;
2. scope (copilot.llm.offline.scope): requests to decline by category (destroying our
   objects, sending things to people, clinical advice, approving from the chat);
3. the grammar: each clause's cues and slots (copilot.llm.offline.grammar: word classes
   from the dataset card and the tools' input models), then the first frame below whose
   cues are present builds the tool call from the slots:

   rollback, promote, retrain    a verb of the action; version, force, sites, kinds
   compare_runs                  compare/better/vs + runs, run ids or champion/challenger
   monitoring_history            drift or performance over time (offline/monitoring.py)
   check_drift                   drift words; a site or a start date
   list_runs                     runs + show/last/which, or a site or a count
   model_info                    live/serving/champion, metrics (AUC...), the inputs
   an answer to our question     the patient we asked about, completed (Memory.pending_patient)
   cohort and data tools         copilot.llm.offline.cohorts: "women over 60 at Hungary",
                                 "how accurate is the model on women", "where does it make
                                 mistakes", "most important features", "what would bring
                                 his risk under the threshold" (before model_info)
   a cohort the grammar cannot read   said so, with examples
   a site's status               a site named with no patient: check_drift at that site
   the data's status             "anything odd in the incoming data": check_drift, or which
   a patient                     explain (why, drivers), what-if (absolute or relative
                                 changes to the last patient), predict (a patient described)

Nothing found: the two or three most likely readings as requests to type back ('Did you
mean: "check drift at Hungary" or "explain the last prediction"?'), or, with no cue at
all, what the copilot can do.

Patients are read by copilot.llm.offline.patients (values, units, negations), relative
changes by copilot.llm.offline.changes, questions about one explanation by
copilot.llm.offline.focus. Requests of several steps ("predict and explain", "check drift
at VA Long Beach and retrain if it drifted") are routed one step at a time
(copilot.llm.offline.steps): `understand` is given the steps this turn already ran as typed
facts (copilot.facts.Step, from tool results, never from text), and the next clause runs
only when its condition holds.

Words that sound like consent ("approved", "skip confirmation", "I am the admin") mean
nothing here: state-changing requests only ever become proposals for a human to decide.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from copilot.facts import NOTHING_LEFT, Memory, Step
from copilot.llm.offline import patterns as rx
from copilot.llm.offline.changes import relative_changes
from copilot.llm.offline.cohorts import (
    about_a_group,
    about_one_patient,
    asks_for_changes,
    asks_statistics,
    changes_a_group,
    cohort_request,
    vague_age_group,
)
from copilot.llm.offline.corrections import corrected_patient
from copilot.llm.offline.definitions import defined_feature
from copilot.llm.offline.focus import mentioned
from copilot.llm.offline.followups import repeat_call
from copilot.llm.offline.grammar import (
    CUES,
    PAST_TRAINING,
    Reading,
    read,
    unknown_place,
    wants_training,
)
from copilot.llm.offline.inputs import unknown_inputs, unknown_roles
from copilot.llm.offline.monitoring import history_arguments
from copilot.llm.offline.patients import missing_required, parse_patient, synonym_pattern
from copilot.llm.offline.scope import (
    APPROVAL_REPLY,
    CAPABILITIES,
    DECLINE,
    approval,
    out_of_scope,
)
from copilot.llm.offline.steps import split_clauses, take_condition, why_unmet
from copilot.llm.offline.text import (
    normalise,
    site_mentions,
    sites,
    without_hedges,
    without_notes,
)
from copilot.suggestions import did_you_mean
from model_service.cards import DatasetCard

__all__ = ["CAPABILITIES", "Intent", "pending_request", "steps_in", "understand"]

EXAMPLE_PATIENT = "63 yo M, asymptomatic chest pain, BP 145, chol 233"

# Questions about one explanation that name no driver word ("what rank does chol have").
_FOCUS_WORDS = re.compile(
    r"\brank|\bimportan|\binfluential|\b(?:matters?|counts?|weighs?) (?:more|less)\b|"
    r"\b(?:raise|lower|increase|decrease|reduce|push)(?:s|es|d|ed)? [a-z' ]{0,30}\brisk\b|"
    r"\bmatters? (?:much|a lot|at all|more|less)\b|\bdoes (?:his |her |the )?[a-z ]{2,30} matter\b|"
    r"\btop[ -]?(?:\d{1,2}|one)\b|\bmatters? (?:the )?most\b|"
    r"\bhow much (?:does|do|did) [a-z' ]{1,30} (?:matter|count|contribute|weigh|affect|influence|"
    r"add|bring|change)|"
    r"\b(?:how|does|do|did) [a-z' ]{0,30}\baffects? (?:it|him|her|the risk|his|her|the score)\b|"
    r"\b(?:largest|biggest|greatest|strongest|main|most) (?:effect|impact|influence|weight|factor|"
    r"driver|reason|contribution)s?\b|\bmostly (?:the|his|her|due|because)\b|"
    r"\bby (?:impact|importance|effect|contribution|influence)\b|"
    r"\bmatter(?:s|ed)? (?:here|for (?:him|her|this|that))\b|"
    r"\bhow big a role\b|\bhow much (?:of an? )?(?:role|difference|effect|impact)\b"
)

# A what-if said plainly enough that finding no change to apply must be said back.
_STRONG_WHAT_IF = re.compile(
    r"\bwhat if\b|\bsuppose\b|\bimagine\b|\bwhat happens if\b|\bhow about\b|\binstead\b|"
    r"\bwhat would\b|\bif (?:he|she|they|the patient)\b"
)

# A change on top of the last what-if's changes.
_CUMULATIVE = re.compile(
    r"\b(?:also|as well|too|on top of (?:that|this)|in addition|additionally|both|plus|"
    r"at the same time|keeping (?:that|those|this|the change))\b"
)

_FOLLOW_ON = re.compile(
    r"^(?:and|but|now|ok|okay|then|same|plus|also|with|without|except|only|just)\b"
)

_NOUN_BEFORE = re.compile(r"(?:^|\W)(?:the|this|that|a|my|your|its|pending|last|latest|recent) $")

_FORCE = re.compile(
    r"\bforced?\b|\boverride\b|\beven if\b|\beven though\b|\bregardless\b|\banyway\b|\bdespite\b|"
    r"\bbypass\b|\bignor(?:e|ing) the gate\b|\bskip(?:ping)? the gate\b"
)

_WHICH_MODEL = re.compile(
    r"\b(?:which|what) (?:(?:kind|type|sort) of )?(?:model|version|algorithm|classifier)\b|"
    r"\bmodel (?:info|details|version|card|kind|type)\b|\bwhat is in production\b"
)

_SINGLE_PATIENT = re.compile(
    r"\b(?:a|an|one|this|that|the|my) (?:\d{1,3} ?(?:yo|y/o|year old|years old|-year-old) )?"
    r"(?:man|woman|patient|gentleman|lady|male|female|guy|person)\b|\b\d{1,3} ?(?:yo|y/o)\b"
)

_BARE_NUMBER = re.compile(
    r"^(?:(?:he|she|they|it|age|the patient)(?:'s| is| was| are)? )?(?:about |around )?"
    r"(\d{1,3}(?:\.\d{1,2})?)(?: [a-z/]{1,12})?\W{0,3}$"
)


class Intent(BaseModel):
    """One tool call with its arguments, or (tool None) a reply to give instead. A reply
    that asks for a patient's missing values carries the patient so far (`pending`) and
    the features it asks for (`asked_for`): see `pending_request`. `declined`: the reply
    refuses a request outside the tools (not a question back, not "I'm not sure");
    `unsure`: the reply is the grammar's "I'm not sure" (readings to choose from, or what
    the copilot can do), not a question about this request."""

    tool: str | None
    arguments: dict[str, Any] = {}
    reply: str | None = None
    pending: dict[str, Any] | None = None
    asked_for: list[str] = []
    pending_tool: str | None = None  # which patient we asked about: the tool it is for
    declined: bool = False
    unsure: bool = False


def _clarify(text: str) -> Intent:
    return Intent(tool=None, reply=text)


def _did_you_mean(options: list[str], lead: str = "I'm not sure what you mean.") -> str:
    return did_you_mean(options, lead)


@dataclass(frozen=True)
class _Context:
    """What a frame needs besides the clause: the request's words as the reason, the
    conversation's memory, the card, a patient shared by all steps, sites that drifted."""

    reason: str
    memory: Memory
    card: DatasetCard
    shared: dict[str, Any]
    drift_sites: list[str]


def _matches(clauses: list[str], done: list[Step], context: _Context) -> bool:
    """Whether the steps said to be done are the first steps of this request."""
    if len(done) > len(clauses):
        return False
    plain = _Context(context.reason, context.memory, context.card, context.shared, [])
    for clause, step in zip(clauses, done, strict=False):
        intent = _route(take_condition(clause, [])[0], plain)
        if intent is None or intent.tool != step.get("tool"):
            return False
    return True


def _acts(lowered: str, card: DatasetCard) -> bool:
    """Whether a request asks for a state change by a verb (not "confirm the rollback")."""
    reading = read(lowered, card)
    return _rollback_verb(reading) or _verb(reading, "promote") or wants_training(reading)


def steps_in(text: str, card: DatasetCard) -> int:
    """How many steps the request asks for ("check drift at VA and retrain if it drifted": 2)."""
    lowered = without_notes(normalise(text, card))
    if out_of_scope(lowered) or _approval_only(lowered, card):
        return 1
    return len(split_clauses(lowered, card))


def _approval_only(lowered: str, card: DatasetCard) -> bool:
    span = approval(lowered)
    return span is not None and not _acts(lowered[: span[0]] + " " + lowered[span[1] :], card)


def understand(
    text: str, memory: Memory, card: DatasetCard, done: list[Step] | None = None
) -> Intent:
    """The tool call (or reply) for one user turn, or for the next step of a request of
    several steps when `done` lists the steps this turn already ran."""
    done = list(done or [])
    lowered = without_hedges(without_notes(normalise(text, card)))
    declined = out_of_scope(lowered)
    if declined is None and _approval_only(lowered, card):
        declined = APPROVAL_REPLY
    if declined is not None:
        return Intent(tool=None, reply=NOTHING_LEFT if done else declined, declined=not done)
    clauses = split_clauses(lowered, card)
    shared = parse_patient(lowered, card) if len(clauses) > 1 else {}
    context = _Context(text.strip()[:500], memory, card, shared, [])
    if done and not _matches(clauses, done, context):
        done = []  # a model read the request otherwise: start from the first
    if len(clauses) <= len(done):
        return Intent(tool=None, reply=NOTHING_LEFT)
    clause, condition = take_condition(clauses[len(done)], done)
    if condition is not None:
        unmet = why_unmet(condition, clause, done)
        if unmet is not None:
            return _clarify(unmet)
    drift_sites = [
        str(d["arguments"]["site"])
        for d in done
        if d.get("tool") == "check_drift" and isinstance(d.get("arguments", {}).get("site"), str)
    ]
    context = _Context(context.reason, memory, card, shared, drift_sites)
    intent = _route(clause, context)
    if intent is not None:
        return intent
    if done:
        return _clarify(f"I did not understand the rest of the request ({clause!r}).")
    return _unsure(read(clause, card), context).model_copy(update={"unsure": True})


def pending_request(text: str, memory: Memory, card: DatasetCard) -> Intent | None:
    """This turn's question back about a patient, when it ends with one: for a patient's
    missing values (`pending`, `asked_for`), or for which patient a request is about
    (`pending_tool`: "explain a prediction" -> "which patient?"). The graph remembers them
    (Memory.pending_patient, asked_for, pending_tool) so that the next turn's answer goes
    where it was asked for."""
    intent = understand(text, memory, card)
    if intent.tool is None and (intent.pending is not None or intent.pending_tool is not None):
        return intent
    return None


# --- the frames --------------------------------------------------------------------------


def _route(clause: str, context: _Context) -> Intent | None:
    reading = read(clause, context.card)
    for frame in _FRAMES:
        intent = frame(reading, context)
        if intent is not None:
            return intent
    return None


def _verb(reading: Reading, cue: str, not_before: re.Pattern[str] | None = None) -> bool:
    """Whether a cue is used as a verb: not right after an article or a possessive
    ("roll back now", not "confirm the rollback", "the last promotion"), nor (`not_before`)
    just before what makes it about something else."""
    return any(
        not _NOUN_BEFORE.search(reading.text[max(0, m.start() - 10) : m.start()])
        and (not_before is None or not not_before.match(reading.text, m.end()))
        for m in CUES[cue].finditer(reading.text)
    )


# Back to a patient or a row, not to a model: a step of the conversation ("go back to the
# first patient", "back to patient A", "let's go back to that man").
_TO_A_PERSON = re.compile(
    r"(?: to)? (?:the |that |this |our |my )?(?:(?:first|second|third|last|earlier|previous|"
    r"other|original|same|older|younger) )?(?:patients?|man|woman|guy|lady|gentleman|person|"
    r"case|pt|row|record|chap|fellow)(?![a-z])"
)


def _rollback_verb(reading: Reading) -> bool:
    return _verb(reading, "rollback", not_before=_TO_A_PERSON)


def _rollback(reading: Reading, context: _Context) -> Intent | None:
    """rollback_model: "roll back", "revert to the previous model", "undo that promotion"."""
    if reading.has("rollback") and _rollback_verb(reading):
        return Intent(tool="rollback_model", arguments={"reason": context.reason})
    return None


def _promote(reading: Reading, context: _Context) -> Intent | None:
    """promote_model: "promote the challenger", "make version 3 the champion", "deploy v2",
    with a version when one is named and force only when asked for."""
    if not (reading.has("promote") and _verb(reading, "promote")):
        return None
    arguments: dict[str, Any] = {"reason": context.reason}
    if reading.version is not None:
        arguments["version"] = reading.version
    if _FORCE.search(reading.text):
        arguments["force"] = True
    return Intent(tool="promote_model", arguments=arguments)


# Sites added to the usual training data, said before any site: "retrain including
# Switzerland", "refit adding the VA data" (not "on Hungary, adding Switzerland").
_ADDED_SITES = re.compile(r"\b(?:including|include|adding|add|with the addition of|on top of)\b")


# Inputs added to or dropped from the model ("with BMI added as a feature", "without the
# cholesterol input"): not something a retrain does.
_INPUTS_CHANGED = re.compile(
    r"\b(?:add|adds|added|adding|drop|drops|dropped|dropping|remove|removes|removed|removing|"
    r"without|exclude|excluding|include|including|new|extra|more)\b[a-z0-9' ]{0,40}?\b(?:as )?"
    r"(?:an? |the |extra |new )?(?:features?|inputs?|variables?|predictors?|covariates?)\b"
)


def _retrain(reading: Reading, context: _Context) -> Intent | None:
    """retrain_model: "retrain", "train a new random forest on Hungary and Switzerland";
    sites named, or all of them, or the defaults plus a site that drifted this turn."""
    if not wants_training(reading):
        return None
    unknown = unknown_inputs(reading.text, context.card)
    if unknown or _INPUTS_CHANGED.search(reading.text):
        named = f" ({', '.join(repr(u) for u in unknown)} not among them)" if unknown else ""
        return _clarify(
            f"A retrain fits the model to the card's inputs{named}: {_inputs(context.card)}. "
            "It can't add or drop inputs; it can change the sites and the model kinds, e.g. "
            "'retrain on Cleveland and Hungary'."
        )
    place = unknown_place(reading.text, context.card)
    if place is not None:
        known = list(sites(context.card))
        return _clarify(
            _did_you_mean(
                [f"retrain on {site}" for site in known[:2]] + ["retrain on all sites"],
                f"I don't know a site called '{place}': the sites are {', '.join(known)}.",
            )
        )
    # "on all sites including Switzerland": all of them
    chosen = list(sites(context.card)) if reading.all_sites else reading.sites
    added = _ADDED_SITES.search(reading.text)  # "retrain including Switzerland"
    mentions = site_mentions(reading.text, context.card)
    if reading.sites and not reading.all_sites and added and mentions[0][0] > added.start():
        chosen = list(dict.fromkeys([*context.card.default_training_sites, *chosen]))
    chosen = chosen or list(
        dict.fromkeys([*context.card.default_training_sites, *context.drift_sites])
    )
    arguments: dict[str, Any] = {"sites": chosen, "reason": context.reason}
    if reading.kinds:
        arguments["model_kinds"] = reading.kinds
    return Intent(tool="retrain_model", arguments=arguments)


_VERSIONS = re.compile(r"(?<![a-z0-9])(?:version|ver|v) ?#?(\d{1,4})(?![0-9.])")

_STRONG_COMPARE = re.compile(
    r"\bcompar|\bversus\b|\bvs\b|\bdiffer|\bside by side\b|\bstacks? up\b|\bhead to head\b|"
    r"\bmeasures? up\b|\bpit\b"
)


def _as_many_as_listed(reading: Reading, memory: Memory) -> int | None:
    """ "compare those" right after a list of runs: as many as were listed."""
    shown = (memory.last_arguments or {}).get("limit")
    if memory.last_tool != "list_runs" or not isinstance(shown, int):
        return None
    if rx.search(r"\d", reading.text) or not _THOSE.search(reading.text):
        return None
    return shown


_THOSE = re.compile(r"\b(?:them|these|those|all of them|all those|all these)\b")


def _compare(reading: Reading, context: _Context) -> Intent | None:
    """compare_runs: runs, run ids, or the champion and the challenger side by side ("how
    does the challenger compare to the champion": the newest runs; the tool's input names
    runs by id or as the last N, not by alias); "compare them" after runs were listed."""
    if not reading.has("compare"):
        return None
    listed = context.memory.last_tool in {"list_runs", "compare_runs"} and bool(
        rx.search(
            r"\b(?:them|these|those|the two|both|the 2|the three|the 3|"
            r"(?:top|first|newest|latest|last) (?:2|3|4|5))\b",
            reading.text,
        )
    )
    versions = len(set(_VERSIONS.findall(reading.text))) >= 2
    objects = reading.has("runs", "aliases") or len(reading.run_ids) >= 2 or listed or versions
    strong = bool(_STRONG_COMPARE.search(reading.text))
    weak_objects = rx.search(r"\bprevious\b|\bit\b|\bmodels\b|\bversions\b", reading.text)
    if not (objects or (strong and (weak_objects or reading.count))):
        return None
    if not objects and reading.has("pronoun"):
        return None  # "how would it compare if he were older": a what-if about him
    if len(reading.run_ids) >= 2:
        return Intent(tool="compare_runs", arguments={"run_ids": reading.run_ids[:5]})
    # two versions named ("how does v2 stack up against v1"): the newest runs side by side
    best = rx.search(r"\b(?:best|worst)\b", reading.text)
    last = reading.count or _as_many_as_listed(reading, context.memory) or (5 if best else 2)
    return Intent(tool="compare_runs", arguments={"last": min(max(last, 2), 5)})


# "recent patients", "lately", "these days": the predictions of the last RECENT_DAYS days.
_RECENT = re.compile(
    r"\b(?:recent|recently|lately|of late|these days|nowadays|currently|right now|at the moment|"
    r"incoming|new patients|latest patients|coming in)\b"
)
RECENT_DAYS = 30


def _again(reading: Reading, context: _Context) -> Intent | None:
    """The last read-only call with one argument changed (copilot.llm.offline.followups):
    "and for Hungary?", "same for women", "only the last one"."""
    found = repeat_call(reading, context.card, context.memory)
    if (
        found is None
        and context.memory.last_tool == "model_info"
        and reading.has("aliases")
        and len(reading.text.split()) <= 4
        and not reading.has("why", "retrain", "promote")
    ):
        return Intent(tool="compare_runs", arguments={"last": 2})  # "and the challenger?"
    return None if found is None else Intent(tool=found[0], arguments=found[1])


def _drift_at(reading: Reading, card: DatasetCard) -> Intent:
    if reading.sites:
        return Intent(tool="check_drift", arguments={"site": reading.sites[0]})
    if reading.since:
        return Intent(tool="check_drift", arguments={"since": reading.since})
    if _RECENT.search(reading.text):
        since = datetime.now(UTC) - timedelta(days=RECENT_DAYS)
        return Intent(tool="check_drift", arguments={"since": since.date().isoformat()})
    known = list(sites(card))
    if not known:
        return _clarify(
            "Which data should I check for drift? Give a start date, e.g. 'since 2026-11-01'."
        )
    return _clarify(
        _did_you_mean(
            [f"check drift at {site}" for site in known[:2]] + ["check drift since yesterday"],
            f"Which data should I check for drift? Name a site ({', '.join(known)}) or a "
            "start date, e.g. 'since 2026-11-01'.",
        )
    )


def _history(reading: Reading, context: _Context) -> Intent | None:
    """monitoring_history: drift or performance over time (copilot.llm.offline.monitoring);
    not for a group picked out by an input the card lacks ("the AUC for smokers over the
    last month": the monitor's series are per site, and the data has no smokers)."""
    if unknown_roles(reading.text, context.card)[0]:
        return None
    memory = context.memory
    arguments = history_arguments(reading, context.card, memory.last_tool, memory.last_arguments)
    return None if arguments is None else Intent(tool="monitoring_history", arguments=arguments)


# The checks' own words: a statistic said beside them ("lots of missing cholesterol") is one
# of the problems the drift check lists, not a question for the data's statistics.
_QUALITY_CHECK = re.compile(
    r"\bdata[- ]quality\b|\bquality (?:issues?|problems?|checks?|findings?|flags?)\b|"
    r"\bimpossible (?:zeros?|values?)\b|\bout[- ]of[- ]range\b"
)


def _drift(reading: Reading, context: _Context) -> Intent | None:
    """check_drift: drift, shift, distribution, data quality; at a site or since a date
    ("distribution of chest pain types in Hungary" asks for the data's statistics)."""
    statistics = asks_statistics(reading.text, context.card)
    if reading.has("drift") and not (
        (statistics and not _QUALITY_CHECK.search(reading.text))
        or changes_a_group(reading.text, context.card)
    ):
        return _drift_at(reading, context.card)
    return None


# "what data was it trained on?", "which sites was v2 trained with?": the data, not the runs
_ABOUT_THE_DATA = re.compile(
    r"^(?:what|which)(?: kind of| sort of)? (?:data|dataset|features?|inputs?|sites?|patients|"
    r"variables|hospitals?|rows|population)\b|\b(?:trained|fitted|built) (?:on|with|using)\W*$"
)


# Whether a registry alias is held at all ("is there a challenger?", "do we have a
# challenger model at the moment?", "any previous champion to roll back to?").
_ALIAS_HELD = re.compile(
    r"\b(?:is there|are there|do we have|have we got|we have|we got|got|any|exists?|is one)"
    r" (?:a |an |any |currently a |still a |already a )?(?:challenger|previous champion|"
    r"candidate model|candidate version)(?: model| version)?(?! (?:better|worse|than|beat))\b"
)


def _runs(reading: Reading, context: _Context) -> Intent | None:
    """list_runs: "show me the last 4 runs", "runs trained on Hungary", "a summary of the
    last run" (one)."""
    about_the_data = reading.has("inputs") or _ABOUT_THE_DATA.search(reading.text)
    if PAST_TRAINING.search(reading.text) and not about_the_data:  # "when was it retrained?"
        # a count said wins ("the most recent training activity, say the last five runs")
        latest = reading.count or (1 if rx.search(r"\b(?:when|last|latest)\b", reading.text) else 5)
        site = {"site": reading.sites[0]} if reading.sites else {}
        return Intent(tool="list_runs", arguments={"limit": latest, **site})
    if _ALIAS_HELD.search(reading.text):  # the runs list each registered version's aliases
        return Intent(tool="list_runs", arguments={"limit": 5})
    if not reading.has("runs"):
        return None
    place = unknown_place(reading.text, context.card)
    if place is not None:  # "runs that used the Toronto hospital data"
        known = list(sites(context.card))
        return _clarify(
            _did_you_mean(
                [f"runs trained on {site}" for site in known[:2]] + ["show the last runs"],
                f"I don't know a site called '{place}': the sites are {', '.join(known)}.",
            )
        )
    named_only = len(reading.text.split()) <= 2  # "runs", "training runs?"
    if not (
        reading.has("list") or reading.sites or reading.count or reading.singular_run or named_only
    ):
        return None
    limit = reading.count or (1 if reading.singular_run else 5)
    arguments: dict[str, Any] = {"limit": min(limit, 50)}
    if reading.sites:
        arguments["site"] = reading.sites[0]
    return Intent(tool="list_runs", arguments=arguments)


def _about_a_patient(reading: Reading) -> bool:
    return (
        _patient_pronoun(reading) or reading.has("why") or bool(_FOCUS_WORDS.search(reading.text))
    )


# "their" said of things just named ("the model's inputs and their units", "the features
# with their ranges"), not of a patient.
_THEIR_THINGS = re.compile(
    r"\b(?:features|inputs|variables|predictors|columns|fields|values|metrics|runs|versions|"
    r"models|sites)\b(?: [a-z,']{1,15}){0,6} (?:their|they|them)\b"
)
_PATIENT_PRONOUN = re.compile(r"\b(?:he|his|him|she|her|this patient|the patient|that patient)\b")


def _patient_pronoun(reading: Reading) -> bool:
    """Whether a pronoun of the request refers to a patient."""
    if not reading.has("pronoun"):
        return False
    return not _THEIR_THINGS.search(reading.text) or bool(_PATIENT_PRONOUN.search(reading.text))


def _model(reading: Reading, _: _Context) -> Intent | None:  # noqa: PLR0911
    """model_info: which model is live, its metrics ("what's the AUC", "how sensitive is
    it"), the inputs it needs ("which features does the model use")."""
    place = unknown_place(reading.text, _.card)
    if place is not None and reading.has("metrics", "model"):
        return _no_such_site(place, _.card, "how accurate is the model at")
    if _ON_ITS_ROWS.search(reading.text) and not _about_a_patient(reading) and not reading.sites:
        return Intent(tool="model_performance", arguments={"where": []})
    if reading.has("live") and not reading.has("why", "pronoun"):
        return Intent(tool="model_info")
    if _WHICH_MODEL.search(reading.text):
        return Intent(tool="model_info")
    if reading.has("metrics") and not reading.has("pronoun"):
        return Intent(tool="model_info")
    if reading.has("inputs") and not _about_a_patient(reading) and not reading.sites:
        if len(parse_patient(reading.text, _.card, pronouns=False)) >= 2:
            return None  # "which features drive the score for <a patient>": explain it
        return Intent(tool="model_info")
    if reading.has("model") and reading.has("status") and not reading.sites:
        return Intent(tool="model_info")
    return None


# What only the model's own evaluation on held-out rows answers (model_performance): how
# often it is right or misses on them, how reliable it is and its confidence intervals ("the
# AUC with its confidence interval on held-out data", "how often does the tool miss someone
# who has heart disease?", "how reliable is this thing?"); the served model's metrics said
# alone ("what's the AUC", "tell me the calibration") stay model_info's.
_ON_ITS_ROWS = re.compile(
    r"\bconfidence intervals?\b|\bheld[- ]out\b|\breliab(?:le|ility)\b|"
    r"\bhow often (?:is|does|do|was|did) (?:it|the model|the tool|the classifier|this)\b"
    r"(?: [a-z]+){0,3} (?:right|correct|wrong|miss|misses|get it right|err|mistaken)\b"
)


def _no_such_site(place: str, card: DatasetCard, ask: str) -> Intent:
    """A place the card has no data from, said back with the card's sites."""
    known = list(sites(card))
    return _clarify(
        _did_you_mean(
            [f"{ask} {site}" for site in known[:2]],
            f"I don't know a site called '{place}': the sites are {', '.join(known)}.",
        )
    )


def _masked(text: str, spans: list[tuple[int, int]]) -> str:
    for start, end in spans:
        text = text[:start] + " " * (end - start) + text[end:]
    return text


def _ask_for_missing(patient: dict[str, Any], card: DatasetCard) -> Intent | None:
    missing = missing_required(patient, card)
    if not missing:
        return None
    needed = ", ".join(f"{f.display_name} ({f.name})" for f in missing)
    return Intent(
        tool=None,
        reply=f"To score this patient I also need: {needed}.",
        pending=patient,
        asked_for=[f.name for f in missing],
    )


def _answer(reading: Reading, context: _Context) -> Intent | None:
    """An answer to our own question for a patient's missing values: "asymptomatic",
    "cp asymptomatic", "it's typical angina", "63" (when age was asked for) completes the
    patient remembered in Memory.pending_patient."""
    pending = getattr(context.memory, "pending_patient", None)
    if not isinstance(pending, dict) or not pending:
        return None
    asked = list(getattr(context.memory, "asked_for", None) or [])
    if getattr(context.memory, "pending_tool", None) == "what_if":
        return _value_answered(reading, context, asked)
    values = parse_patient(reading.text, context.card, pronouns=False)
    bare = _BARE_NUMBER.match(reading.text)
    numeric_asked = [name for name in asked if context.card.feature(name).kind == "numeric"]
    if not values and bare and len(numeric_asked) == 1:
        feature = context.card.feature(numeric_asked[0])
        value = float(bare.group(1))
        values = {feature.name: int(value) if feature.integer else value}
    if not values or not missing_required(values, context.card):
        return None  # nothing said, or a whole new patient: not an answer
    patient = {**pending, **values}
    wanted = getattr(context.memory, "pending_tool", None)
    question = _ask_for_missing(patient, context.card)
    if question is not None:
        return question.model_copy(update={"pending_tool": wanted})
    return Intent(tool=wanted or "predict_risk", arguments={"patient": patient})


# A new value said as the answer to "which value should I try?": "it's 2.3", "let's say
# 190", "try 140", "make it 200", "about 180".
_VALUE_SAID = re.compile(
    r"^(?:(?:ok|okay|well|hmm|so|then|and)\W{0,2} )?(?:(?:it's|it is|let's say|lets say|say|try|"
    r"make it|maybe|perhaps|about|around|to|use|with|put|set it to|go with)\W{0,2} ){0,2}"
    r"(\d{1,3}(?:\.\d{1,2})?)(?: [a-z/]{1,12})?\W{0,3}$"
)


def _value_answered(reading: Reading, context: _Context, asked: list[str]) -> Intent | None:
    """The value asked for a what-if on the last patient ("what if his ST depression were
    different?" -> "which ST depression?" -> "it's 2.3"): that what-if, run."""
    memory, card = context.memory, context.card
    if memory.prediction_id is None or len(asked) != 1:
        return None
    feature = card.feature(asked[0])
    said = parse_patient(reading.text, card, pronouns=False)
    bare = _VALUE_SAID.match(reading.text)
    if feature.name in said:
        value: Any = said[feature.name]
    elif bare is not None and feature.kind == "numeric" and not said:
        number = float(bare.group(1))
        if feature.limits is not None and number not in feature.limits:
            return None
        value = int(number) if feature.integer else number
    else:
        return None
    return Intent(
        tool="what_if",
        arguments={"prediction_id": memory.prediction_id, "changes": {feature.name: value}},
    )


# A value of the last patient asked to change without the new one: "what if his ST
# depression were different?", "how does her risk change with a different cholesterol?"
_SOME_OTHER_VALUE = re.compile(
    r"\b(?:different|another|other|otherwise|changed?|changes|changing|varied|altered)\b"
)


def _which_value(reading: Reading, context: _Context) -> Intent | None:
    """A what-if on the last patient that names one input and no new value for it: which
    value to try, asked (the answer, next turn, is that what-if: `_value_answered`)."""
    memory, card, text = context.memory, context.card, reading.text
    if memory.prediction_id is None or not memory.patient or not _SOME_OTHER_VALUE.search(text):
        return None
    named = mentioned(text, card)
    if len(named) != 1 or named[0] in parse_patient(text, card, pronouns=False):
        return None
    if relative_changes(text, card, memory.patient).values or about_a_group(text, card):
        return None
    feature = card.feature(named[0])
    return Intent(
        tool=None,
        reply=(
            f"Which {feature.display_name} should I try for the last patient? "
            f"E.g. '{_example(card, feature.name)}'."
        ),
        pending=dict(memory.patient),
        asked_for=[feature.name],
        pending_tool="what_if",
    )


def _cohort(reading: Reading, context: _Context) -> Intent | None:
    """A question about many patients ("patients over 60", "women with typical angina"):
    not one incomplete patient. Said so, with what can be done instead."""
    if not (reading.has("cohort") and reading.has("cohort_question")):
        return None
    if reading.since is not None and reading.has("status", "drift"):
        return None  # "have the incoming patients changed over the last two weeks?"
    if _SINGLE_PATIENT.search(reading.text):
        return None
    site = (reading.sites or list(sites(context.card)) or ["?"])[0]
    options = [f"women over 60 at {site}", "how accurate is the model on women"]
    options.append("most important features")
    return _clarify(
        _did_you_mean(
            options,
            "I could not read which group of patients you mean: name it by the dataset's "
            "features and sites (age, sex, chest pain type, cholesterol, ...).",
        )
    )


def _vague_ages(reading: Reading, context: _Context) -> Intent | None:
    """A group named by an age word with no ages ("the elderly"): which ages, asked."""
    if context.memory.prediction_id is not None and reading.has("pronoun"):
        return None  # about the last patient ("if he were older")
    question = vague_age_group(reading.text, context.card)
    return None if question is None else _clarify(question)


_SUPPOSED = re.compile(r"\b(?:if|suppose|supposing|imagine|assuming|were)\b")


def _unknown_group(reading: Reading, context: _Context) -> Intent | None:
    """A group picked out by an input the card lacks ("how accurate is it for smokers?",
    "patients with a BMI over 30"), or given only such changes ("what if all the women
    stopped smoking?"): said back with the inputs there are. A group also given a change of
    the card's features ("lost 5 kg and had their BP 10 lower") is left to the cohort tools:
    the rest is done, and the router says what was not used."""
    text, card = reading.text, context.card
    group, changed = unknown_roles(text, card)
    if not (group or changed) or about_one_patient(text, card):
        return None
    people = any(rx.fullmatch(r"(?:non-?|ex-?)?(?:smokers?|drinkers?)", word) for word in group)
    if not (people or about_a_group(text, card)):
        return None
    site = (reading.sites or list(sites(card)) or ["?"])[0]
    if group:
        return _clarify(
            f"The data has no {' or '.join(repr(w) for w in group)}: it is not one of the "
            f"model's inputs ({_inputs(card)}), so I can't pick out that group. Name it by "
            f"those features or a site, e.g. 'women over 60 at {site}'."
        )
    found = cohort_request(text, card, context.memory.prediction_id)
    if not _SUPPOSED.search(text) or (found is not None and found[0] == "cohort_what_if"):
        return None
    return _clarify(
        f"I can't give the group {' or '.join(repr(w) for w in changed)}: not one of the "
        f"model's inputs ({_inputs(card)}). E.g. 'what if everyone over 60 had cholesterol "
        "20 lower'."
    )


# What an input does to the risk or the model, asked of one the card lacks ("how much does
# the smoking add to his risk", "his troponin came back high: does that change his risk",
# "could the model factor in insurance status"): said back, nothing else to do.
_ITS_EFFECT = re.compile(
    r"\b(?:add|adds|added) to (?:his |her |their |the )?risk\b|"
    r"\b(?:change|changes|affect|affects|raise|raises|increase|increases|lower|lowers|alter|"
    r"alters|move|moves|shift|shifts) (?:his |her |their |the |a patient's |the predicted )?"
    r"(?:[a-z]+ )?(?:risk|score|prediction|probability)\b|"
    r"\b(?:factor in|factor it in|take into account|taken into account|account for|"
    r"include|includes|consider|considers|use|uses)\b(?= .{0,40}\b(?:model|risk)\b)|"
    r"\b(?:effect|impact|influence|contribution|weight|attribution) of\b"
)


def _not_an_input(reading: Reading, context: _Context) -> Intent | None:
    """The effect of an input the card lacks, asked with no patient to score (a patient
    with values is scored, and what is not an input is said after the answer)."""
    text, card = reading.text, context.card
    unknown = unknown_inputs(text, card)
    if not unknown or not _ITS_EFFECT.search(text):
        return None
    numbers = [n for n in parse_patient(text, card, pronouns=False) if n not in {"age", "sex"}]
    if numbers:
        return None
    return _clarify(
        f"{' and '.join(repr(u) for u in unknown)} {'is' if len(unknown) == 1 else 'are'} not "
        "among the model's inputs "
        f"({_inputs(card)}), so I can't say what it does to the risk. I can show what any of "
        "those inputs does, e.g. 'what if his cholesterol were 200'."
    )


def _changes_for_whom(reading: Reading, context: _Context) -> Intent | None:
    """A counterfactual asked with no patient to search from ("what would it take to get
    the risk down?" before any prediction): which patient, asked; the answer goes to the
    counterfactual (Intent.pending_tool)."""
    if context.memory.prediction_id is not None or not asks_for_changes(reading.text):
        return None
    if len(parse_patient(reading.text, context.card, pronouns=False)) >= 3:
        return None
    return Intent(
        tool=None,
        reply=(
            "Which patient should I search changes for? Describe one, e.g. "
            f"'{EXAMPLE_PATIENT}', or name a dataset row."
        ),
        pending_tool="counterfactual",
    )


def _definition(reading: Reading, context: _Context) -> Intent | None:
    """define_feature: what one input means, its unit or its coding
    (copilot.llm.offline.definitions)."""
    scored = context.memory.prediction_id is not None
    feature = defined_feature(reading.text, context.card, labels=not scored)
    if feature is None:
        return None
    return Intent(tool="define_feature", arguments={"feature": feature})


# The tools whose arguments name a group of the dataset's rows (`where`).
_GROUP_TOOLS = frozenset(
    {
        "describe_data",
        "model_performance",
        "model_mistakes",
        "feature_importance",
        "feature_interactions",
        "cohort_what_if",
    }
)


def _last_group(memory: Memory) -> list[dict[str, Any]]:
    """The conditions of the last call about a group, which "those" and "them" refer back to
    (typed arguments of a call that ran, never text); none after any other tool."""
    if memory.last_tool not in _GROUP_TOOLS:
        return []
    where = (memory.last_arguments or {}).get("where")
    return [c for c in where if isinstance(c, dict)] if isinstance(where, list) else []


def _last_row(memory: Memory) -> int | None:
    """The one dataset row the last answer was about (rows shown, or a row's
    counterfactual), which "it" and "its prediction" then mean; None otherwise."""
    last = memory.last_arguments or {}
    if memory.last_tool == "show_rows" and len(last.get("row_ids") or []) == 1:
        row = last["row_ids"][0]
    elif memory.last_tool == "counterfactual":
        row = last.get("row_id")
    else:
        return None
    return row if isinstance(row, int) else None


def _cohorts(reading: Reading, context: _Context) -> Intent | None:
    """The cohort and data tools (copilot.llm.offline.cohorts). A what-if on a group whose
    change is none of the model's inputs ("what if all the diabetics took aspirin?") is said
    back, not answered with the group's statistics."""
    memory = context.memory
    found = cohort_request(
        reading.text, context.card, memory.prediction_id, _last_group(memory), _last_row(memory)
    )
    if found is None:
        return None
    found = _on_the_last_group(found, reading, memory)
    hypothetical = _STRONG_WHAT_IF.search(reading.text) and not reading.has("pronoun")
    if found[0] == "describe_data" and hypothetical and about_a_group(reading.text, context.card):
        return _clarify(
            f"I could not read a change to one of the model's inputs ({_inputs(context.card)}) "
            "in that. E.g. 'what if everyone over 60 had cholesterol 20 lower'."
        )
    return Intent(tool=found[0], arguments=found[1])


# A question going on from the last answer ("only the missed cases", "and the calibration?")
_GOES_ON_FROM_GROUP = re.compile(
    r"^(?:and|but|now|then|same|also|only|just|what about|how about)\b"
)
_EVERYONE = re.compile(
    r"\b(?:everyone|everybody|all (?:the )?(?:patients|rows|data)|overall|in general|whole)\b"
)


def _on_the_last_group(
    found: tuple[str, dict[str, Any]], reading: Reading, memory: Memory
) -> tuple[str, dict[str, Any]]:
    """A group tool asked with no group of its own in a clause that goes on from a question
    about a group ("where does the model go wrong on women?" then "only the missed cases"):
    asked of that group, as the last answer was (never of everyone unless said so)."""
    tool, arguments = found
    earlier = _last_group(memory)
    if tool not in _GROUP_TOOLS or arguments.get("where") or not earlier:
        return found
    if not _GOES_ON_FROM_GROUP.search(reading.text) or _EVERYONE.search(reading.text):
        return found
    return tool, {**arguments, "where": earlier}


def _site(reading: Reading, context: _Context) -> Intent | None:
    """A question about a site with no patient in it ("how is Hungary doing", "anything odd
    with the Swiss data", "what about Switzerland?"): check_drift at that site, or its runs
    when the last answer listed runs."""
    if not reading.sites:
        return None
    if len(parse_patient(reading.text, context.card, pronouns=False)) >= 2:
        return None
    if not reading.has("status", "data"):
        if reading.has("why", "risk"):
            return None
        if reading.has("what_if") and (
            reading.has("pronoun") or parse_patient(reading.text, context.card, pronouns=False)
        ):
            return None  # "what if he were from Hungary": about him
    if context.memory.last_tool == "list_runs" and (
        reading.has("what_if") or _FOLLOW_ON.search(reading.text)
    ):
        return Intent(tool="list_runs", arguments={"limit": 5, "site": reading.sites[0]})
    return Intent(tool="check_drift", arguments={"site": reading.sites[0]})


def _since(reading: Reading, context: _Context) -> Intent | None:
    """A start date alone ("since last week?", "and since 2026-11-01?"): only drift is
    checked since a date."""
    if reading.since is None or reading.has("runs", "runs_weak", "pronoun", "why"):
        return None
    if parse_patient(reading.text, context.card, pronouns=False):
        return None
    words = len(rx.findall(r"[a-z0-9-]+", reading.text))
    if reading.has("drift", "status", "data") or words <= 6:
        return Intent(tool="check_drift", arguments={"since": reading.since})
    return None


def _data(reading: Reading, context: _Context) -> Intent | None:
    """A question about the data with no site ("anything odd in the incoming data?",
    "send me the drift report"): check_drift since a date, or which data."""
    if not (reading.has("status") and reading.has("data")) or reading.has("pronoun"):
        return None
    if parse_patient(reading.text, context.card, pronouns=False):
        return None
    return _drift_at(reading, context.card)


# Where a change to a patient described in the same request starts: "<patient>, what would
# his risk be with his cholesterol at 200", "<patient>: how much would it change if we got
# her BP down to 130".
_CHANGE_STARTS = re.compile(
    r"\b(?:what if|what would|what happens if|suppose|supposing|imagine|assuming|"
    r"if (?:we|you|he|she|they|his|her|their|the patient|it)|(?:with|had) (?:his|her|their) )|"
    # a question about the risk of the patient just described, after them: "... how would
    # her risk look in 5 years?", "...: where would his risk be a decade on?" (a what-if
    # only when a change follows)
    r"\b(?:and )?(?:how|where|what|how much|how far) (?:would|will|does|do|might|could|is) "
    r"(?:his|her|their|the) (?:risk|score|prediction|odds|chances?|probability)\b|"
    # a verb that changes the patient just described: "take <patient> and lower his
    # cholesterol by 40", "if <patient> brought his BP to 120"
    r"\b(?:and |then )?(?:lower|lowers|lowered|lowering|raise|raises|raised|raising|reduce|"
    r"reduces|reduced|reducing|increase|increases|increased|cut|cuts|drop|drops|dropped|bring|"
    r"brings|brought|get|gets|got|change|changes|changed|make|set|put|swap|switch|double|halve|"
    r"take|took|add) (?:his|her|their|the patient's)\b|"
    # the same patient again, with something else: "compare <patient> with the same man at
    # chol 300"
    r"\b(?:with|to|and|versus|vs) (?:the )?same (?:man|woman|patient|person|guy|lady)\b|"
    # a new sentence that changes the patient just described: "... And with a flat ST
    # segment?", "... Same man a decade older?", "... Would it differ for a woman?",
    # "... - would a normal thallium change much?"
    r"(?<=[.;:?!-] )(?:and |but |now )?(?:with(?:out)?|same (?:man|woman|patient|person|guy|lady)|"
    r"(?:would|does|is) (?:it|the risk|his risk|her risk) (?:differ|change|be different) for|"
    r"would (?:a|an|the|his|her) )\b"
)


# "if" and one of the card's numeric inputs, after a patient: "<patient>. if pressure become
# 120", "<patient> if BP down 20 and chol down 60", "<patient>. if cholesterol is less by 50"
# (written without the pronoun _CHANGE_STARTS wants: "if his BP ...").
_IF_AN_INPUT: dict[str, re.Pattern[str]] = {}


def _if_an_input(card: DatasetCard) -> re.Pattern[str]:
    if card.name not in _IF_AN_INPUT:
        names = "|".join(synonym_pattern(f) for f in card.features if f.kind == "numeric")
        _IF_AN_INPUT[card.name] = re.compile(
            rf"\bif (?:the |his |her |their |patient's |the patient's )?(?:{names})(?![a-z])"
        )
    return _IF_AN_INPUT[card.name]


def _described_what_if(reading: Reading, context: _Context) -> Intent | None:
    """what_if on a patient described in the same request: the values before the change's
    words are the patient, those after are the changes (absolute, or relative to the
    patient described)."""
    card = context.card
    found = [
        *itertools.islice(_CHANGE_STARTS.finditer(reading.text), 3),  # linear time
        *itertools.islice(_if_an_input(card).finditer(reading.text), 2),
    ]
    starts = sorted(found, key=lambda m: m.start())
    for start in starts:
        before, after = reading.text[: start.start()], reading.text[start.start() :]
        patient = parse_patient(before, card, pronouns=False)
        if len(patient) < 2:
            continue
        changes = relative_changes(after, card, patient)
        said = parse_patient(_masked(after, changes.spans), card, pronouns=False)
        # "same man a decade older": a value said again is no change
        changed = {k: v for k, v in {**said, **changes.values}.items() if patient.get(k) != v}
        if changes.problems:
            return _clarify(
                f"I can't apply {'; '.join(changes.problems)}. Say the new value, e.g. "
                "'what if his cholesterol were 200'."
            )
        if changed:
            return Intent(tool="what_if", arguments={"patient": patient, "changes": changed})
    return _change_said_first(reading.text, card) or _later_in_life(reading.text, card)


# The change said first, then the patient after a colon, a dash or a question mark:
# "suppose this patient had no exercise angina: <patient>", "what if her BP were 120? <patient>".
_CHANGE_FIRST = re.compile(
    r"^\W{0,3}(?:(?:and|so|ok|okay|now|then),? )?(?:what if|what would|what happens if|suppose|"
    r"supposing|imagine|assuming|if|say)\b[^:;?]{3,200}?(?:[:;?]| - )"
)


def _change_said_first(text: str, card: DatasetCard) -> Intent | None:
    """what_if on a patient described after the change ("suppose he had no exercise angina:
    63 yo man, ..., exercise angina, ..."): the opening clause is the change, the rest the
    patient; a value the patient already has is no change."""
    opening = _CHANGE_FIRST.match(text)
    if opening is None:
        return None
    patient = parse_patient(text[opening.end() :], card, pronouns=False)
    if len(patient) < 3:
        return None
    said = opening.group(0)
    changes = relative_changes(said, card, patient)
    stated = parse_patient(_masked(said, changes.spans), card, pronouns=False)
    changed = {k: v for k, v in {**stated, **changes.values}.items() if patient.get(k) != v}
    if not changed or changes.problems:
        return None
    return Intent(tool="what_if", arguments={"patient": patient, "changes": changed})


_TIME_SAID = re.compile(r"\b(?:years?|yrs?|decades?)\b")


def _later_in_life(text: str, card: DatasetCard) -> Intent | None:
    """what_if on a patient described and then put forward in time in the same request,
    with no other change word ("<patient> - and in 5 years?", "<patient>: her risk a decade
    on, all else the same?"): the patient is what comes before the time said."""
    if "age" not in card.feature_names or not _TIME_SAID.search(text):
        return None
    described = parse_patient(text, card, pronouns=False)
    if "age" not in described:
        return None
    found = relative_changes(text, card, described)
    if set(found.values) != {"age"} or found.problems or not found.spans:
        return None
    start = min(span[0] for span in found.spans)
    patient = parse_patient(text[:start], card, pronouns=False)
    if len(patient) < 2 or patient.get("age") != described["age"]:
        return None
    return Intent(tool="what_if", arguments={"patient": patient, "changes": found.values})


def _inputs(card: DatasetCard) -> str:
    return ", ".join(f.display_name for f in card.features)


def _patient(reading: Reading, context: _Context) -> Intent | None:  # noqa: PLR0911, PLR0912
    """Predict, explain and what-if, with follow-ups about the last patient. A step of a
    two-step request that names no patient ("predict and explain <patient>") uses the one
    the whole request describes. Relative changes are applied to the remembered patient;
    one that cannot be applied is said back, never dropped."""
    memory, card, text = context.memory, context.card, reading.text
    other = _the_other_sex(text, memory, card)
    if other is not None:
        return Intent(tool="what_if", arguments={"prediction_id": memory.prediction_id, **other})
    changes = relative_changes(text, card, memory.patient)
    masked = " ".join(_masked(text, changes.spans + _replaced(text)).split())
    patient = parse_patient(masked, card)
    explicit = parse_patient(masked, card, pronouns=False)
    if not explicit and len(context.shared) >= 2:
        patient, explicit = dict(context.shared), dict(context.shared)
    what_if_said = not _A_NEW_PATIENT.search(text) and (
        reading.has("what_if", "compare") or bool(_FOLLOW_ON.search(text))
    )
    asks_why = (
        reading.has("why")
        or (
            bool(_FOCUS_WORDS.search(text))
            and not reading.has("what_if", "compare")
            and not changes.values
        )
        or _one_driver_asked(reading, context, bool(explicit or changes.values or changes.problems))
    )
    relative = bool(changes.values or changes.problems)
    if asks_why and len(explicit) < 2 and not (changes.values or (relative and what_if_said)):
        if memory.prediction_id is not None:
            return Intent(
                tool="explain_prediction", arguments={"prediction_id": memory.prediction_id}
            )
        # an explanation asked for by name is what the patient described next is for; a
        # bare "why?" with nothing before it is not (the patient is then scored first)
        asked = (
            "explain_prediction"
            if _EXPLANATION_ASKED.search(text) or _A_PATIENT_REFERRED.search(text)
            else None
        )
        return Intent(
            tool=None,
            reply=f"Which patient should I explain? Describe one first, e.g. '{EXAMPLE_PATIENT}'.",
            pending_tool=asked,
        )
    # values of the last patient said alone ("at a cholesterol of 190", "cholesterol reduced
    # to 200"): a new patient is introduced by who they are (age, sex, chest pain)
    valued = [n for n in explicit if card.feature(n).kind != "boolean"]  # not just named
    about_him = (
        bool(explicit)
        and not _A_NEW_PATIENT.search(text)
        and (
            (reading.has("pronoun") and bool(missing_required(explicit, card)))
            or (bool(valued) and not any(f.name in explicit for f in card.features if f.required))
        )
    )
    if memory.prediction_id is not None and (what_if_said or relative or about_him):
        unknown = unknown_inputs(masked, card)
        applicable = {**explicit, **changes.values}
        # what is not in the model is said after the answer (the route's not_in_model):
        # the rest is still done; with nothing else to do, it is asked about
        if changes.problems or (unknown and not applicable):
            said = [*changes.problems, *(f"'{u}' (not one of the model's inputs)" for u in unknown)]
            applied = {**explicit, **changes.values}
            kept = f" The other changes ({_listed(applied)}) are fine." if applied else ""
            return _clarify(
                f"I can't apply {'; '.join(said)}.{kept} Say the new value, e.g. "
                f"'what if his cholesterol were 200'. The model's inputs are: {_inputs(card)}."
            )
        changed = _kept(_new_only({**explicit, **changes.values}, memory), memory, text)
        changed = changed or _new_amount(text, memory, card)
        if changed:
            return Intent(
                tool="what_if",
                arguments={"prediction_id": memory.prediction_id, "changes": changed},
            )
        if _STRONG_WHAT_IF.search(text) and len(explicit) < 2:
            return _clarify(
                f"I could not find a change to one of the model's inputs in {text!r}. "
                f"The inputs are: {_inputs(card)}. E.g. 'what if his cholesterol were 200'."
            )
    if relative and memory.prediction_id is None:
        return _clarify(
            "A change needs a patient to start from: describe one first, e.g. "
            f"'{EXAMPLE_PATIENT}', then ask 'what if his cholesterol were 20 lower'."
        )
    if len(explicit) >= 2 or (explicit and reading.has("risk")):
        if asks_why:
            return Intent(tool="explain_prediction", arguments={"patient": patient})
        if memory.pending_tool and not reading.has("risk"):  # the patient we asked for
            return Intent(tool=memory.pending_tool, arguments={"patient": patient})
        return _ask_for_missing(patient, card) or Intent(
            tool="predict_risk", arguments={"patient": patient}
        )
    if reading.has("risk") and reading.has("pronoun") and memory.prediction_id is not None:
        return _clarify(
            _did_you_mean(
                ["explain the last prediction", "what if his cholesterol were 200"],
                "The last patient's risk is in my answer above.",
            )
        )
    if reading.has("risk"):
        return _clarify(
            "Describe the patient, e.g. '63 yo M, asymptomatic chest pain, "
            "BP 145/90, chol 233 mg/dl, max HR 150, ST depression 2.3'."
        )
    return None


# The next patient announced ("ok, another one: 44M, ...", "next patient:", "patient B:",
# "second one"): the values that follow are a new patient, not changes to the last one.
_A_NEW_PATIENT = re.compile(
    r"\b(?:another|next|new|second|third|fourth|different|other) (?:one|patient|case|person|"
    r"man|woman|gentleman|lady|guy)\b(?! (?:with|but|instead))|"
    r"\bpatient (?:[b-h]|no\.? ?[2-9]|number (?:2|3|two|three)|#[2-9])\W"
)

# The last question about a patient asked of the one just scored: "now for her", "same
# question for him", "and the same for this one".
_SAME_FOR = re.compile(
    r"^(?:(?:and|now|ok|okay|so|then|again|same|the same|same question|same thing|do the same|"
    r"do that|do it|ask the same|same again)\W{0,2} ){1,3}"
    r"(?:for|with|about|on|of) (?P<who>her|him|them|this one|the new one|the second one|"
    r"this patient|the new patient|this lady|this man|this guy|this woman)\W*$"
)


def _same_question(reading: Reading, context: _Context) -> Intent | None:
    """The last patient question (Memory.last_question: an explanation, a what-if with its
    changes, a counterfactual) asked again of the patient scored since; the person named
    must be that patient ("now for her" after a woman), else it is the other frames'."""
    memory = context.memory
    question = memory.last_question or {}
    found = _SAME_FOR.match(reading.text)
    if found is None or memory.last_tool != "predict_risk" or memory.prediction_id is None:
        return None
    tool = question.get("tool")
    if tool not in {"explain_prediction", "what_if", "counterfactual"}:
        return None
    said = parse_patient(found.group("who"), context.card, pronouns=True)
    if any((memory.patient or {}).get(name) not in (None, value) for name, value in said.items()):
        return None  # "and for her?" after a man: the same patient as a woman
    arguments: dict[str, Any] = {"prediction_id": memory.prediction_id}
    if tool == "what_if":
        arguments["changes"] = question.get("changes") or {}
    return Intent(tool=tool, arguments=arguments) if arguments.get("changes", True) else None


# A patient referred to and not yet described ("why is the risk so high for my patient?",
# "what's driving it for this lady?"): the patient described next is the one meant.
_A_PATIENT_REFERRED = re.compile(
    r"\b(?:my|this|our|the) (?:patient|man|woman|gentleman|lady|guy|chap|fellow)\b|"
    r"\b(?:for|with|of) (?:him|her)\b"
)

# A follow-up that is nothing but a person: "and for her?", "what about him?".
_ONLY_A_PERSON = re.compile(
    r"^(?:(?:and|but|now|ok|okay|so|then|what|how|about|for|with|the same|same)\W{0,2} ){0,4}"
    r"(?P<who>her|him|she|he)\W{0,3}$"
)


def _the_other_sex(text: str, memory: Memory, card: DatasetCard) -> dict[str, Any] | None:
    """ "and for her?" after a man's prediction (or "him" after a woman's): the same patient
    with the other sex, read as the card reads "a woman" / "a man"; None otherwise."""
    found = _ONLY_A_PERSON.match(text)
    if found is None or memory.prediction_id is None or not memory.patient:
        return None
    person = "a woman" if found.group("who") in {"her", "she"} else "a man"
    said = parse_patient(person, card, pronouns=False)
    if len(said) != 1 or said.items() <= memory.patient.items():
        return None  # the card has no such input, or it is the same patient
    return {"changes": said}


_GOES_ON = re.compile(r"^(?:and|but|now|ok|okay|so|then|what about|how about)\b")


def _one_driver_asked(reading: Reading, context: _Context, values_said: bool) -> bool:
    """ "what about cholesterol?" right after an explanation: that input's part in it (a
    feature named with no value, going on from the last answer)."""
    memory = context.memory
    if memory.last_tool != "explain_prediction" or memory.prediction_id is None or values_said:
        return False
    short = len(reading.text.split()) <= _SHORT_FOLLOW_UP
    return (
        short and bool(_GOES_ON.match(reading.text)) and bool(mentioned(reading.text, context.card))
    )


_SHORT_FOLLOW_UP = 8


# An explanation asked for by name ("explain a prediction", "break it down", "the drivers").
_EXPLANATION_ASKED = re.compile(
    r"\b(?:explain\w*|break(?:s|ing)? (?:it |that |this |a |the )?down|breakdown|drivers?|"
    r"contribut\w*|shap)\b"
)


# The value a change replaces, said beside the new one: "swap the asymptomatic pain for
# non-anginal", "from asymptomatic to typical angina", "typical instead of asymptomatic".
_REPLACED = re.compile(
    r"\b(?:swap|swapping|replace|replacing|switch|switching|exchange|trade|change|changing)"
    r"(?: out)?(?P<old> (?:the |his |her |their )?[a-z0-9.' -]{1,30}?) (?=(?:for|with|by)\b)|"
    r"\b(?P<old2>from [a-z0-9.' -]{1,30}?) (?=to\b)|"
    r"\b(?:instead of|rather than|in place of)(?P<old3> (?:a |an |the |his |her )?[a-z0-9.'-]{1,20}"
    r"(?: [a-z0-9.'-]{1,20})?)"
)


def _replaced(text: str) -> list[tuple[int, int]]:
    """Where the values a change replaces are said (so that only the new ones are read)."""
    spans = []
    for match in itertools.islice(_REPLACED.finditer(text), 3):
        group = next(g for g in ("old", "old2", "old3") if match.group(g) is not None)
        spans.append(match.span(group))
    return spans


# A bare amount going on from a what-if ("and 180?", "what about 170 then?").
_BARE_AMOUNT = re.compile(
    r"^(?:and|but|now|ok|okay|then|what about|how about|or|try)(?: (?:with|at|to))? "
    r"(\d{1,4}(?:\.\d{1,2})?)(?: (?:then|instead|too))?\W*$"
)


# A bare amount relative to the last what-if's ("and 20 lower than that?", "10 more?").
_BARE_STEP = re.compile(
    r"^(?:and|but|now|ok|okay|then|what about|how about|or|try)? ?(?:another |a further )?"
    r"(\d{1,4}(?:\.\d{1,2})?) (?:points? |units? |more |less )?"
    r"(lower|higher|less|more|down|up|fewer)(?: (?:than that|still|again|on top))?\W*$"
)


def _new_amount(text: str, memory: Memory, card: DatasetCard) -> dict[str, Any]:
    """The last what-if again with its one numeric change set to a new amount: after "what
    if his chol were 200", "and 180?" is cholesterol 180, "and 20 lower than that?" 180."""
    bare, step = _BARE_AMOUNT.match(text), _BARE_STEP.match(text)
    last = dict(memory.last_changes or {})
    numeric = [
        name for name in last if name in card.feature_names and card.feature(name).kind == "numeric"
    ]
    if (bare is None and step is None) or memory.last_tool != "what_if" or len(numeric) != 1:
        return {}
    feature = card.feature(numeric[0])
    if bare is not None:
        value = float(bare.group(1))
    else:
        assert step is not None
        sign = 1 if step.group(2) in {"higher", "more", "up"} else -1
        value = float(last[feature.name]) + sign * float(step.group(1))
        if feature.limits is not None and value not in feature.limits:
            return {}
    return {**last, feature.name: int(value) if feature.integer else value}


def _kept(changed: dict[str, Any], memory: Memory, text: str) -> dict[str, Any]:
    """The changes, on top of the last what-if's when said so ("and if he were also 10
    years younger")."""
    if changed and memory.last_changes and _CUMULATIVE.search(text):
        return {**memory.last_changes, **changed}
    return changed


# A change imagined, not a value corrected: "sorry, what if he were 58?".
_HYPOTHETICAL = re.compile(r"\b(?:if|would|suppose|supposing|imagine|assuming|hypothetical\w*)\b")

# The patient tools a corrected patient is asked of again (anything else: scored anew).
_ASKED_OF_A_PATIENT = frozenset({"predict_risk", "explain_prediction"})


def _corrected(reading: Reading, context: _Context) -> Intent | None:
    """The last patient with a value corrected ("sorry, I meant 58 not 85", "actually make
    that female"), asked again as the last request was: a new patient, not a what-if (see
    copilot.llm.offline.corrections). A hypothetical is a what-if whatever its apology."""
    memory = context.memory
    if memory.prediction_id is None or not memory.patient:
        return None
    if _HYPOTHETICAL.search(reading.text):
        return None
    patient = corrected_patient(reading.text, context.card, memory.patient)
    if patient is None:
        return None
    tool = memory.last_tool if memory.last_tool in _ASKED_OF_A_PATIENT else "predict_risk"
    return Intent(tool=tool, arguments={"patient": patient})


def _completed(reading: Reading, context: _Context) -> Intent | None:
    """The last patient with the values it lacked, when it had too few for a risk (the
    answer said what is missing) and this turn says only values it did not have, with no
    change or question: the patient completed and scored anew, not a what-if on a risk
    that was never given."""
    memory, card, text = context.memory, context.card, reading.text
    last = memory.patient or {}
    if not last or len(last) >= card.needed_features:
        return None
    if reading.has("what_if", "compare", "why") or _FOLLOW_ON.search(text):
        return None
    if _FOCUS_WORDS.search(text):  # a question about the values ("does angina matter?")
        return None
    changes = relative_changes(text, card, last)
    explicit = parse_patient(text, card, pronouns=False)
    if changes.values or changes.problems or len(explicit) < 2 or set(explicit) & set(last):
        return None
    return Intent(tool="predict_risk", arguments={"patient": {**last, **explicit}})


def _new_only(said: dict[str, Any], memory: Memory) -> dict[str, Any]:
    """The values said that differ from the last patient's ("the same man with a
    cholesterol of 190": the cholesterol, not his sex), or all of them when none do."""
    last = memory.patient or {}
    new = {k: v for k, v in said.items() if last.get(k) != v}
    return new or said


def _listed(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items())


_FRAMES = (
    _rollback,
    _promote,
    _retrain,
    _corrected,
    _same_question,
    _again,
    _compare,
    _history,
    _drift,
    _runs,
    _vague_ages,
    _unknown_group,
    _not_an_input,
    _definition,
    _cohorts,
    _changes_for_whom,
    _model,
    _answer,
    _cohort,
    _site,
    _data,
    _since,
    _completed,
    _described_what_if,
    _which_value,
    _patient,
)


# --- when nothing fits ---------------------------------------------------------------------


def _unsure(reading: Reading, context: _Context) -> Intent:
    """The two or three most likely readings, as requests to type back; with no cue at all,
    what the copilot can do."""
    memory, card = context.memory, context.card
    options: list[str] = []
    known = list(sites(card))
    if reading.sites:
        options.append(f"check drift at {reading.sites[0]}")
    if memory.prediction_id is not None and (
        reading.has("why", "pronoun", "risk", "what_if") or _named_features(reading, card)
    ):
        options.append("explain the last prediction")
        named = _named_features(reading, card) or ["chol"]
        options.append(
            f"what if his {card.feature(named[0]).display_name} were {_example(card, named[0])}"
        )
    elif _named_features(reading, card) or reading.has("risk", "why", "pronoun"):
        options.append(f"predict the risk for {EXAMPLE_PATIENT}")
    if reading.has("runs", "runs_weak"):
        options += ["list the recent runs", "compare the last two runs"]
    if reading.has("model", "live", "metrics", "inputs", "aliases"):
        options += ["which model is live?", "compare the challenger with the champion"]
    if reading.has("drift", "status", "data") and known:
        options.append(f"check drift at {known[0]}")
    if not options and (_FOLLOW_ON.search(reading.text) or len(reading.text.split()) <= 5):
        options = _after_last(memory, known)  # a short follow-up: readings of the last answer
    if options and not reading.has("help"):
        return _clarify(_did_you_mean(options))
    examples = [f"predict the risk for {EXAMPLE_PATIENT}", "which model is live?"]
    if known:
        examples.insert(1, f"check drift at {known[0]}")
    listed = ", ".join(f'"{e}"' for e in examples)
    if reading.has("help"):
        return _clarify(f"{CAPABILITIES} For example: {listed}.")
    return _clarify(f"{DECLINE}. {CAPABILITIES} For example: {listed}.")


def _after_last(memory: Memory, known: list[str]) -> list[str]:
    """Readings of a short follow-up that fit the last answer ("and the one before?")."""
    last = memory.last_tool
    if last in {"list_runs", "compare_runs"}:
        return ["list the recent runs", "compare the last two runs", "which model is live?"]
    if last == "check_drift" and known:
        return [f"check drift at {site}" for site in known[:2]] + ["check drift since last week"]
    if last in {"predict_risk", "explain_prediction", "what_if"} and memory.prediction_id:
        return ["explain the last prediction", "what if his cholesterol were 200"]
    return []


def _named_features(reading: Reading, card: DatasetCard) -> list[str]:
    return [n for n in mentioned(reading.text, card) if card.feature(n).kind == "numeric"]


def _example(card: DatasetCard, name: str) -> str:
    feature = card.feature(name)
    if feature.limits is None:
        return "1"
    middle = (feature.limits.low + feature.limits.high) / 2
    return f"{round(middle)}" if feature.integer or middle > 10 else f"{middle:.1f}"
