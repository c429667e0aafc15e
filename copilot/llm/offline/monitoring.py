"""Questions about how things moved over time, read as monitoring_history arguments:
"how has VA Long Beach drifted over the last month?", "is the model getting worse?",
"AUC trend at Hungary", "show the monitoring history"; after a history answer, a short
follow-up naming a site ("and for Hungary?", "what about Switzerland?") asks for that
site's history.

A question counts when it asks how something moved (a trend, a history, "over time",
"getting worse", "how has ... drifted/changed") and names what moved: drift, data quality
or performance; or when it names the monitor itself. Otherwise a drift question stays
check_drift ("drift over the past week": the predictions since then), so the two tools
never compete. A place that is none of the card's sites ("how has the Berlin site drifted?")
is passed on as the site, for the tool to refuse with the sites it knows.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from copilot.llm.offline import patterns as rx
from copilot.llm.offline.grammar import Reading, unknown_place
from copilot.llm.offline.text import known_words
from model_service.cards import DatasetCard

TOOL = "monitoring_history"

_MEASURES = (
    r"auc|roc auc|accuracy|sensitivity|specificity|recall|performance|drift|data quality|"
    r"share drifted|calibration"
)
_OVER_TIME = re.compile(
    r"\bover time\b|\btrends?\b|\btrending\b|"
    r"\bhistor(?:y|ical)\b|\bgetting (?:worse|better)\b|\b(?:got|gotten|become|becoming) "
    r"(?:worse|better)\b|\bdegrad(?:e|ed|es|ing|ation)\b|\bdeteriorat|\bdeclin(?:e|ed|ing)\b|"
    r"\bhow (?:has|have) [a-z ]{1,40}(?:drifted|changed|moved|done|performed|evolved|fared|"
    r"been doing|been holding up|held up|been faring|been behaving|behaved)\b|"
    r"\btime series\b|\bevolv(?:e|ed|es|ing)\b|\bevolution\b|"
    r"\b(?:week|month|day) (?:by|over|to|after) (?:week|month|day)\b|\b(?:weekly|daily|monthly)\b|"
    r"\b(?:each|every|per) (?:day|week|check)\b|\bcheck by check\b|"
    r"\bover the (?:last|past) (?:few |several |couple of |\d{1,2} )?(?:weeks|months)\b|"
    # a measure said to have moved: "has the AUC dropped", "a fall in sensitivity"
    rf"\b(?:{_MEASURES})(?: [a-z']+){{0,3}} (?:dropped|fallen|fell|gone (?:down|up)|decreased|"
    r"increased|improved|risen|rose|worsened|slipped|sunk|slid|dipped|moved|gone|tanked|crashed|"
    r"plummeted|plunged|nosedived|cratered|collapsed|gone downhill|gone south|taken a hit)\b|"
    r"\b(?:drop|fall|decline|dip|rise|increase|improvement|change|slide)s? in (?:the )?"
    rf"(?:{_MEASURES})\b|"
    # a measure moving now: "is accuracy slipping", "is the model degrading"
    rf"\b(?:{_MEASURES}|model|it)(?: [a-z']+){{0,3}} (?:dropping|falling|slipping|sliding|"
    r"worsening|improving|going (?:down|up)|trending|developing|progressing|creeping|climbing|"
    r"rising|growing|edging|inching|ticking (?:up|down)|sagging|eroding)\b|"
    r"\b(?:develop(?:ed)?|progress(?:ed)?) (?:over|through|across)\b|\bthrough time\b|"
    r"\bacross time\b|\bin recent weeks\b|\bpast (?:few |several )?checks\b|"
    # set against an earlier time: "drifting more than before", "worse than last month"
    r"\bthan (?:before|earlier|previously|last (?:week|month|time|check)|it (?:was|used to be)|"
    r"it used to|a (?:week|month) ago)\b|"
    r"\b(?:still|keeps?|kept|continu(?:e|es|ing) to) (?:drift|shift|degrad|declin|drop|fall|slip)|"
    # steadiness is a property of a series: "how stable has the AUC been"
    r"\bhow (?:stable|steady|consistent) (?:has|have|is|are|was|were)\b|"
    r"\b(?:stayed|remained|been|kept) (?:stable|steady|flat|constant|consistent)\b|"
    # a chart is a series: "plot the accuracy", "graph drift at VA"
    rf"\b(?:plot|chart|graph)(?:s|ted)?\b(?: [a-z']+){{0,4}} (?:{_MEASURES})\b"
)
# A short clause that goes on from the last answer: "and for Hungary?", "what about VA
# Long Beach?", "same for Cleveland", "how about the Swiss site?".
_FOLLOW_UP = re.compile(
    r"^(?:and|but|now|ok|okay|then|same|also|what about|how about)\b(?:\s+\S+){0,6}\W*$"
)
# The subject of "how has the Berlin site drifted?": a place when the grammar reads it as
# one and it is not what the model sees ("how has the model's input data drifted?").
_SUBJECT = re.compile(
    r"\bhow (?:has|have) (?:the )?((?:[a-z][a-z'.-]{1,20} ){0,2}?[a-z][a-z'.-]{1,20} "
    r"(?:data|site|hospital|clinic|centre|center|cohort|patients|dataset))\b"
)
_NOT_SUBJECTS = frozenset(
    "model model's models input inputs feature features prediction predictions risk "
    "production live serving monitored logged".split()
)
_FOLLOW_UP_WORDS = 10
# The data set against what the model was trained on ("any degradation in the data from the
# Swiss site compared with what the model was trained on", "do Hungary's patients look
# different from what it learned on"): a drift check now, not a series, unless a period or
# the series is named too.
_AGAINST_TRAINING = re.compile(
    r"\b(?:compared (?:with|to)|against|different from|differs? from|changed from|relative to|"
    r"versus|vs) (?:what |the data |the patients )?(?:the model |it )?(?:was |were )?"
    r"(?:trained on|learned on|learnt on|learned from|learnt from|training)\b"
)
_A_PERIOD = re.compile(
    r"\bover time\b|\btrends?\b|\btrending\b|\bhistor|\bweeks?\b|\bmonths?\b|\bchecks\b|"
    r"\bsince\b|\bdays?\b|\bseries\b"
)
_MONITOR = re.compile(
    r"\bmonitor(?:ing)? (?:history|checks?|results?|series|runs?|pass(?:es)?|alerts?|findings?|"
    r"reports?|output|log)\b|"
    r"\b(?:the|its|our|your|last|latest) monitor(?:'s)?\b(?! (?:the|it|for)\b)|"
    r"\bmonitoring (?:say|said|show|shows|showed|find|found)\b|"
    # the monitor's passes: "at the last check", "in the last few checks"
    r"\b(?:last|latest|recent|previous|past) (?:few |several |couple of |\d{1,2} )?"
    r"(?:monitor(?:ing)? )?(?:checks|passes|check|pass)\b|\balerts? (?:from|by|raised)\b|"
    # the monitor's alerts said alone: "any alerts this week?" ("false alarms" are mistakes)
    r"(?<!false )\b(?:alerts?|alarms?|alerted|alarmed)\b"
)
_DRIFT = re.compile(r"\bdrift|\bshift")
# A count of drifted features: "how many features have drifted", "number of inputs shifting".
_FEATURES_DRIFTED = re.compile(
    r"\b(?:how many|number of|count of|which|what) (?:of the )?(?:features?|inputs?|variables?|"
    r"columns?)\b[a-z' ]{0,30}\b(?:drift|shift)|\b(?:drifted|drifting|shifted) (?:features|inputs|"
    r"variables|columns)\b"
)
_QUALITY = re.compile(r"\bdata quality\b|\bquality findings?\b")
_PERFORMANCE = re.compile(
    r"\bworse\b|\bbetter\b|\bperform|\bdegrad|\bdeteriorat|\bdeclin|\baccura|\bauc\b|"
    r"\bsensitivity\b|\bspecificity\b|\bimprov|\bslipp|\bslid"
)
# A performance measure asked of a period ("the AUC since last week", "sensitivity at
# Hungary since 2026-11-01"): only the monitor's series has it (model_info has no dates).
_MEASURED = re.compile(r"\bauc\b|\broc\b|\baccuracy\b|\bsensitivity\b|\bspecificity\b|\bperform")
_NAMED_METRICS = (
    ("sensitivity", re.compile(r"\bsensitivity\b|\brecall\b")),
    ("specificity", re.compile(r"\bspecificity\b")),
    ("accuracy", re.compile(r"\baccuracy\b")),
    ("auc", re.compile(r"\bauc\b|\broc\b")),
)


known_words(*(rx.sub(r"\\[a-z]", " ", p.pattern) for p in (_OVER_TIME, _MONITOR)))


def metric_in(text: str) -> str | None:
    """The series a question names (a metric, data quality or drift), or None."""
    for metric, pattern in _NAMED_METRICS:
        if pattern.search(text):
            return metric
    if _QUALITY.search(text):
        return "data_quality_findings"
    if _FEATURES_DRIFTED.search(text):
        return "features_drifted"
    if _DRIFT.search(text):
        return "share_drifted"
    if _PERFORMANCE.search(text):
        return "auc"
    return None


# The series of what the last answer measured: "and how has that looked over time?" after a
# drift check is that site's drift; after the live model's metrics, its AUC.
_LAST_SERIES = {"check_drift": "share_drifted", "model_info": "auc"}


def _model_status(reading: Reading) -> bool:
    """ "how has the model been holding up", "is the champion doing ok": all its series."""
    return reading.has("model") and reading.has("status") and not reading.has("runs")


def history_arguments(
    reading: Reading,
    card: DatasetCard,
    last_tool: str | None = None,
    last_arguments: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """monitoring_history's arguments when the clause asks how something moved over time,
    or, right after a history answer (`last_tool`), names a site in a short follow-up; a
    short question over time naming no measure is about the last answer's
    (`last_arguments`)."""
    text = reading.text
    if last_tool == TOOL and len(reading.sites) == 1 and _FOLLOW_UP.search(text):
        return {"site": reading.sites[0], **({"since": reading.since} if reading.since else {})}
    monitor = _MONITOR.search(text) is not None
    if _AGAINST_TRAINING.search(text) and not (monitor or _A_PERIOD.search(text)):
        return None
    dated = reading.since is not None and _MEASURED.search(text) is not None
    if not (monitor or dated or _OVER_TIME.search(text)):
        return None
    metric = metric_in(text)
    last = dict(last_arguments or {})
    if metric is None and not monitor:
        if last_tool in _LAST_SERIES and len(text.split()) <= _FOLLOW_UP_WORDS:
            metric = _LAST_SERIES[last_tool]
            if isinstance(last.get("site"), str) and not reading.sites:
                reading = replace(reading, sites=[last["site"]])
        elif not _model_status(reading):
            return None
    arguments: dict[str, Any] = {}
    subject = _SUBJECT.search(text)
    if subject is not None and set(subject.group(1).split()) & _NOT_SUBJECTS:
        subject = None
    place = unknown_place(text, card) or (
        unknown_place(f"at the {subject.group(1)}", card) if subject else None
    )
    if len(reading.sites) == 1:
        arguments["site"] = reading.sites[0]
    elif place is not None:
        arguments["site"] = place
    if metric is not None:
        arguments["metric"] = metric
    if reading.since:
        arguments["since"] = reading.since
    return arguments
