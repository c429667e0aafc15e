"""The grammar's vocabulary: word classes (cues) and slots, read once per clause.

A cue is a class of words that says what a request is about (a verb such as "retrain",
an object such as "runs", a question such as "why"), never a whole sentence. Intents
(copilot.llm.offline.intents) are chosen from cues and filled from slots: sites, model
kinds, a version, run ids, counts and dates, and the patient values of the card. Classes
whose words exist elsewhere come from there: the metric words from the runs tool's metric
names, the model kinds from the training code, sites and features from the dataset card.

Each class is one regular expression of alternatives between word boundaries, with no
nested repetition: linear in the length of the text.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from copilot.llm.offline.text import count_in, kinds_in, known_words, since_in, sites_in
from model_service.cards import DatasetCard
from tools.runs import RUN_METRICS


def _words(text: str, *more: str) -> re.Pattern[str]:
    """One pattern for a word class written as text, alternatives separated by commas,
    matched between word boundaries; `*` is a word's rest ("explain*": explain, explains,
    explanation), `~` one to three words in between ("make ~ champion"), and the words of a
    phrase may be joined by hyphens ("side-by-side")."""
    alternatives = [a.strip() for a in text.split(",") if a.strip()] + list(more)
    parts = [
        re.escape(a)
        .replace(r"\*", "[a-z]{0,12}")
        .replace(r"\ \~\ ", r"(?: [a-z0-9'-]{1,20}){1,3}~")
        .replace(r"\ ", "[ -]")  # "head-to-head" as "head to head"
        .replace("~", " ")
        for a in alternatives
    ]
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(parts) + r")(?![a-z0-9])")


_METRIC_WORDS = sorted(
    {part for name in RUN_METRICS for part in name.split("_") if len(part) > 2}
    - {"holdout", "error", "rate", "gap", "cv"}
)

# Each class serves one category of request (see the module docstring of intents).
CUES: dict[str, re.Pattern[str]] = {
    # explain_prediction: asking for the reasons of one prediction
    "why": _words(
        "why, how come, what for, explain*, explanation*, driv*, drove, factor*, reason*, "
        "contribut*, pushed, pushes, pulls, pulling, pulled, pull down, pull it, pull the risk, "
        "pull his, pull her, drag*, holding ~ down, holding ~ up, "
        "shap, break down, break ~ down, breakdown, behind, responsible for, attribut*, "
        "accounts for, account for, what makes, what's pushing, what is pushing, due to, "
        "effect of, impact of, influence of, role of, "
        # taking a result apart, or asking which of the patient's values weighed most
        "unpack*, walk me through, talk me through, take me through, what went into, "
        "what's behind, what is behind, underlying, rationale, justify, justification, "
        "how did you get, how did it get, how did you arrive, how did you come up, "
        "where does ~ come from, where did ~ come from, what made, "
        "hurt* him, hurt* her, hurt* his, hurt* most, hurt* the most, help* him most, "
        "help* her most, help* the most, weigh* most, weigh* the most, weigh* heaviest, "
        "heaviest, carr* the most weight, count* most, count* the most, mattered, "
        "reach that, arrive at, come to that, get to that, how did ~ reach, how did ~ "
        "arrive, how did ~ get there, how was ~ calculated, how was ~ computed, how was ~ "
        "worked out, part of it, part of that, big part, a factor, play* a role, "
        "play* a part, making him, making her, makes him, makes her, made him, made her, "
        "coming from, what's making, what is making, under the hood, decode, dissect*, "
        "spell out, spell it out, tip* it, tip* the balance, tip* the scale*, interpret*, "
        "concerning, worrying, worrisome, red flag*, "
        # what a risk is blamed on ("what's fuelling it", "the main culprits")
        "fuel*, fuelling, fueling, to blame, culprit*, what's elevating, what is elevating, "
        "raising ~ risk, raising it, boosting ~ risk, biggest thing, biggest single, main thing, "
        # what a result rests on ("what did the model base that on", "on what basis"), and
        # which of the patient's own values weigh ("which of his numbers do the damage")
        "based ~ on, base ~ on, basis, on what grounds, grounds for, damage, damaging, harm*, "
        "which of his, which of her, which of their, which of the patient's, protective, "
        "responsible, "
        # one of the patient's values asked about as a trouble, or what makes the risk what
        # it is ("is his sugar a problem", "which thing is most making the risk high for him")
        "is his ~ a problem, is her ~ a problem, is his ~ an issue, is her ~ an issue, "
        "is his ~ a concern, is her ~ a concern, making the risk, making his risk, "
        "making her risk, making risk"
    ),
    # predict_risk: asking for a risk
    "risk": _words(
        "risk*, predict*, prediction*, score, estimate*, chance*, likelihood, likely, "
        "probability, odds, assess*, evaluate, prognosis"
    ),
    # what_if: a hypothetical change to the last patient
    "what_if": _words(
        "what if, what about, suppose, supposing, imagine, instead, how about, what happens "
        "if, what would, would, were, had, if he, if she, if they, if his, if her, if the "
        "patient, if it, same patient, same guy, same man, same woman, same person, "
        "hypothetical*, scenario, counterfactual, and for, and with, but with, now with, and "
        "if, what happens, "
        # asking to score the last patient again with something changed
        "try it with, try with, try again with, rerun with, re-run with, redo with, "
        "recalculate with, recompute with, change his, change her, set his, set her, "
        "make him, make her, make it, with ~ instead, again with, run ~ with, "
        # verbs that set a value of the last patient
        "assuming, assume, pretend, let's say, lets say, say he, say she, hypothetically, "
        "swap, switch his, switch her, switch the, change the, change age, change it, set the, "
        "set age, update his, update her, update the, replace, modify, alter, "
        # scoring the last patient again
        "rescore*, re-score*, rerun, re-run, recalculat*, recomput*, reassess*, redo, "
        "score him again, score her again, score it again, what then, what now, "
        "re-estimat*, re-evaluat*, re-predict*, plug in, put in, consider him, consider her, "
        "change ~ to, change ~ from, set ~ to, switch ~ to, turn ~ into, swap ~ for, "
        "replace ~ with, "
        # correcting a value of the last patient
        "actually, make that, correction, correct that, i meant, i mean, sorry, rather, "
        "in fact, should have said, should be, should read"
    ),
    # check_drift: the words of drift itself
    "drift": _words(
        "drift*, shift*, distribution*, data quality, covariate, from what ~ trained on, "
        "from the training data, from training, than the training data, like the training "
        "data, with the training data, consistent with training, match* the training, "
        "moved away from training, patient mix, case mix, "
        # the data set against what the model learnt from, in other words
        "compared with training, compared to training, compared with the training, compared "
        "to the training, versus training, vs training, vs the training, against training, "
        "against the training, relative to training, relative to the training, unlike the "
        "training, unlike what ~ trained on, unlike the ones ~ trained on, from the training, "
        "different from training, comparable to training, comparable to the training, "
        "out of line with training, representative, training distribution, training "
        "population, training cohort, population shift, population change*, input "
        "distribution, feature distribution*, than in training, than during training, than at "
        "training, than the training, "
        # the drift statistics' own names ("population stability index", "KS tests")
        "population stability, stability index, psi, ks test*, kolmogorov*"
    ),
    # check_drift when said of data or a site: "anything odd", "how is X doing"
    "status": _words(
        "odd, weird, strange, unusual, anomal*, off, wrong, problem*, issue*, going on, "
        "doing, holding up, healthy, health, ok, okay, fine, alright, changed, change, "
        "changes, different, report, monitor*, stable, look*, behaving, suspicious, funny, "
        "surprising, happening, check*, update, status"
    ),
    "data": _words(
        "data, dataset, patients, population, site, sites, hospital, centre, center, "
        "incoming, inputs lately, recent predictions, predictions"
    ),
    # runs: list_runs and compare_runs
    "runs": _words(
        "run, runs, run's, experiment*, training job*, run log, training log, trainings, "
        "training results, latest training, last training, recent training, newest "
        "training, previous training, latest retraining, last retraining, recent retraining, "
        # the tracking server the runs are logged to
        "mlflow"
    ),
    "runs_weak": _words("history, trained, training"),
    "compare": _words(
        "compar*, versus, vs, differ*, difference*, side by side, better than, worse than, "
        "stack up, stacks up, measure* up, against, pit*, beat*, outperform*, head to head, "
        "better, worse, best, worst, improve*, next to each other, next to one another, "
        "alongside, contrast*, diff, diffs, diffed, "
        # what moved from one to the other ("what changed between the last two runs")
        "changed between, change between, changes between, moved between, new between, "
        "changed from ~ to, changed since the"
    ),
    "list": _words(
        "list, show, see, display, recent, last, latest, newest, history, which, what, all, "
        "past, summary, summari*, overview, give, tell, any, how many, do we have, get, "
        "pull up, bring up, fetch, dig up, lowdown, rundown, run-down, recap, what's new"
    ),
    # model_info: the served model, its metrics and its inputs
    "model": _words("model, models, classifier, algorithm, version, versions, champion"),
    "live": _words(
        "live, serving, served, in production, in prod, production, deployed, in use, "
        "running, currently, current model, current version, champion, model card, model "
        "info*, model details, model version, the card, about the model, about the current "
        "model, about the live model, describe the model, the model itself, model overview, "
        # the model in charge, in other words
        "reigning, in charge, on duty, active model, active version, calling the shots, "
        "in place, being used, we're using, we are using, do we use, are we using, in "
        "service, the incumbent, incumbent, powering, powers the predictions, making the "
        "predictions, makes the predictions, top dog, running the show"
    ),
    "metrics": _words(
        "metric*, auc, roc, pr auc, sensitiv*, specificity, accuracy, accurate, precision, "
        "recall, f1, performance, perform*, how good, how well, false positive*, false "
        "negative*, threshold, cutoff, cut-off, calibrat*, decision rule, call ~ positive, "
        "call ~ negative, call ~ high risk, count* as positive, classif* ~ as, flag* ~ as",
        *_METRIC_WORDS,
    ),
    "inputs": _words(
        "features, inputs, input, variables, predictors, columns, fields, what does it need, "
        "what does it take, what does it use, goes into, what information, what data does, "
        "feature list, input schema, units, unit, range, ranges, allowed values, valid "
        "values, accepted values, limits, expect ~ in, measured in"
    ),
    # the three state-changing intents (proposals only)
    "retrain": _words(
        "retrain*, re-train*, refit*, re-fit*, rebuild, build a new, new model on, kick off "
        "training, kick off a training, start training, start a training, launch training, "
        "launch a training, run training, run a training, fit a new, fit another, train again, "
        "spin up a new, spin up a fresh, spin up another, cook up a new, cook up a fresh, whip "
        "up a new, whip up a fresh, fresh model on, new model on, build another, train up, "
        "train a fresh, train another"
    ),
    "train_verb": _words("train, fit"),
    "promote": _words(
        "promote, promoting, promotion, deploy, ship, roll out, release, go live, "
        "make ~ champion, make ~ live, put ~ live, put ~ in production, "
        "put ~ into production, set ~ as champion, set ~ as production, set ~ live, "
        "set ~ as the production, set ~ as the live, set ~ as the champion, "
        "move ~ to production, become ~ champion, become champion, be the new champion, "
        "make ~ the new champion, "
        "switch production to, switch serving to, swap in, push ~ to production, make ~ the "
        "champion, crown, put ~ in charge, place ~ in charge, swap ~ in, switch to the "
        "challenger, switch over to, go with the challenger, go with version, start using, "
        "upgrade to, "
        # a verb that moves a model into production ("bump the challenger to prod")
        "bump ~ to prod, bump ~ to production, bump ~ into prod, bump ~ up to prod, push ~ to "
        "prod, move ~ to prod, move ~ into prod, move ~ into production, send ~ to prod, send "
        "~ to production, take ~ to prod, take ~ to production, get ~ into prod, get ~ into "
        "production, put ~ in prod, put ~ into prod, graduate ~ to, greenlight, green-light, "
        "green light, give ~ the green light"
    ),
    "rollback": _words(
        "roll back, roll ~ back, rollback, roll-back, revert*, undo, restore, go back, "
        "switch back, back to the previous, back to the old, put ~ back, bring back, "
        "bring ~ back, reinstate, reinstall, ditch ~ new, ditch ~ champion, ditch ~ current, "
        "scrap ~ new, scrap ~ champion, scrap ~ current, bin ~ new, dump ~ new, demote*, "
        "back out, pull the plug, "
        # a verb that puts the earlier model back ("swap the old model back in")
        "swap ~ back, switch ~ back, flip ~ back, change ~ back, move ~ back"
    ),
    "aliases": _words("champion, challenger, candidate, new model, old model"),
    # a question about many patients, not one
    "cohort": _words(
        "patients, people, women, men, males, females, persons, individuals, cases, cohort, "
        "population, group, subgroup, everyone, everybody, those, smokers, diabetics"
    ),
    "cohort_question": _words(
        "over, above, under, below, older than, younger than, between, who, with, having, how "
        "many, average, mean, proportion, percentage, fraction, share, most, all, aged, "
        "among, typically, usually, older, younger, higher risk, lower risk, more likely, "
        "less likely, at higher, at lower, tend to, in general"
    ),
    # the last patient, referred to
    "pronoun": _words(
        "he, his, him, she, her, they, their, this patient, the patient, that patient, same "
        "patient, this one, this guy, this man, this woman"
    ),
    # questions about the copilot itself
    "help": _words(
        "help, what can you do, what do you do, capabilities, how do i use, who are you, what "
        "are you, how does this work, what can i ask"
    ),
}

known_words(*(pattern.pattern for pattern in CUES.values()))

_VERSION = re.compile(r"(?<![a-z0-9])(?:version|ver|v|model version|#) ?#?(\d{1,4})(?![0-9.])")

_RUN_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")

_SINGULAR_RUN = re.compile(
    r"\b(?:the|our|my) (?:last|latest|newest|most recent|previous) (?:training )?run\b(?!s)"
)

_ALL_SITES = re.compile(r"\b(?:all|every|each) (?:the |of the |four |4 )?(?:sites|site|data)\b")


# A place named as a source of data ("on the Mayo Clinic data", "at St Mary's hospital"),
# read when none of the card's sites is named: said back, never replaced by a default.
_PLACE = re.compile(
    r"\b(?:on|at|from|using|use|used|uses|with|for|in|included|including) (?:the )?"
    r"((?:[a-z][a-z'.-]{1,20} ){0,2}?[a-z][a-z'.-]{1,20})"
    r" (?:data|site|hospital|clinic|centre|center|cohort|patients|dataset)\b"
)
_NOT_PLACES = frozenset(
    "all every each the same new newer newest latest recent more most other others incoming "
    "whole combined full four old older previous current fresh existing default training this "
    "that these those our my your available drifted their his her its some any clean cleaned "
    "updated complete entire usual original "
    # the data's own parts ("on held-out data", "on the test data"), not places
    "held-out holdout test testing validation evaluation unseen".split()
)


# A hospital named the way hospitals are ("at Boston General", "from Glasgow Royal
# Infirmary", "at Springfield Memorial"): the name before the word that makes it one.
_HOSPITAL = re.compile(
    r"\b(?:at|from) (?:the )?((?:[a-z][a-z'.-]{1,20} ){0,2}?[a-z][a-z'.-]{1,20})"
    r" (?:general|infirmary|memorial|royal|medical cent(?:er|re)|university hospital|"
    r"children's|county hospital|health system|health trust)\b"
)


def unknown_place(text: str, card: DatasetCard) -> str | None:
    """A place named as a source of data that is none of the card's sites ("retrain on the
    Mayo Clinic data": "mayo"; "the AUC at Boston General": "boston"), or None."""
    if sites_in(text, card):
        return None
    for match in itertools.chain(_PLACE.finditer(text), _HOSPITAL.finditer(text)):
        words = match.group(1).split()
        if not set(words) & _NOT_PLACES:
            return match.group(1)
    return None


@dataclass(frozen=True)
class Reading:
    """What one clause says: its cues and its slots (no decision yet)."""

    text: str
    cues: frozenset[str]
    sites: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    version: str | None = None
    run_ids: list[str] = field(default_factory=list)
    count: int | None = None
    since: str | None = None
    singular_run: bool = False
    all_sites: bool = False

    def has(self, *cues: str) -> bool:
        return any(cue in self.cues for cue in cues)


# "run" as a verb ("run it with bp 120", "run the model on this patient") is not a run.
_RUN_VERB = re.compile(
    r"\brun (?:it|this|that|the model|the numbers|the prediction|a prediction|again|him|her|"
    r"the patient|a check|(?:an?|the|some|my|our) (?:[a-z]{1,12} )?(?:checks?|tests?|analys[ie]s|"
    r"reports?|statistics|stats))\b"
)


# Data set against what the model learnt from, words apart: "are recent patients unlike the
# ones in the training data?", "does it still resemble what the model was trained on?"
_AGAINST_TRAINING = re.compile(
    r"\b(?:unlike|differ[a-z]{0,5}|different|compar[a-z]{0,5}|similar|like|resembl[a-z]{0,3}|"
    r"representative|consistent|match[a-z]{0,3}|deviat[a-z]{0,5}|diverg[a-z]{0,5}|moved|changed)"
    r"\b[a-z0-9' ]{0,40}?\b(?:training (?:data|set|patients|population|cohort|distribution|"
    r"sample|rows)|(?:what|ones|patients|data|population) (?:the model |we |it |you )?"
    r"(?:was |were |has been |had been )?(?:trained|built|fitted|developed) (?:on|from|with))\b"
)


def _cues(text: str) -> frozenset[str]:
    found = {name for name, pattern in CUES.items() if pattern.search(text)}
    if _AGAINST_TRAINING.search(text):
        found.add("drift")
    if "runs" in found and not CUES["runs"].search(_RUN_VERB.sub(" ", text)):
        found.discard("runs")
    return frozenset(found)


def read(text: str, card: DatasetCard) -> Reading:
    """The cues and slots of one clause (already normalised, notes set apart)."""
    version = _VERSION.search(text)
    return Reading(
        text=text,
        cues=_cues(text),
        sites=sites_in(text, card),
        kinds=kinds_in(text),
        version=version.group(1) if version else None,
        run_ids=_RUN_ID.findall(text),
        count=count_in(text),
        since=since_in(text),
        singular_run=bool(_SINGULAR_RUN.search(text)),
        all_sites=bool(_ALL_SITES.search(text)),
    )


_IMPERATIVE_TRAIN = re.compile(
    r"(?:^|[,;:.!] ?|\b(?:please|pls|and|then|to|let's|lets|now|go|can you|could you|"
    r"should we|shall we|we should|we need to|i want to|i'd like to|want to|need to|"
    r"can we|could we|must)) ?(?:train|fit)\b(?! ?(?:ed|ing))|"
    r"\b(?:train|fit) (?:a |an |another |one |the model |it |a new |new |again\b)"
)


# Starting something that is a model kind ("kick off a logistic regression on VA").
_START_A_KIND = re.compile(
    r"\b(?:kick off|start|launch|spin up|cook up|whip up|fire up|put together|build|run|fit|"
    r"train|try|give me|get me|make|create|produce)"
    r"(?: (?:a|an|another|one|new|fresh|the|some))*"
    r" (?:logistic|logreg|random forest|forest|xgboost|xgb|gradient boost|boost)"
)


# A question about training that happened ("when was the model last retrained?", "has it
# been retrained since?"): the runs answer it; it is no request to train.
PAST_TRAINING = re.compile(
    r"\b(?:when|how long ago|how often|how many times)\b[a-z0-9' ]{0,40}?\b(?:re-?)?"
    r"(?:trained|fitted|built|refit)\b|"
    r"\b(?:has|have|was|were|did|is)\b (?:it|the model|the champion|the challenger|this model|"
    r"that model|they|we|you|version \d{1,4}|v\d{1,4})(?: (?:been|ever|already|last|recently)){0,2}"
    r" (?:re-?)?(?:trained|fitted|refit|retrain)\b|"
    r"\blast (?:re-?)?trained\b|"
    # "what's been trained lately?", "which models have we built so far?"
    r"\b(?:what|which|anything|any)(?: (?:new|fresh|other|more|recent))?"
    r"(?: (?:models?|runs?|versions?|else))?"
    r"(?:'s| has| have| did| were| was)?(?: (?:we|you|they|been|got|ever|recently|already|just))"
    r"{0,3} (?:re-?)?(?:trained|built|fitted)\b|"
    # "the results of the most recent retraining", "how did the last training go?"
    r"\b(?:the|our|that|your) (?:most recent|last|latest|recent|previous|newest) (?:re-?)?"
    r"training\b(?! (?:on|with|using)\b)"
)


known_words(PAST_TRAINING.pattern, _AGAINST_TRAINING.pattern)


def wants_training(reading: Reading) -> bool:
    """A request to train: "retrain", "refit", "train"/"fit" used as a verb ("train a new
    random forest on Hungary", "please train on VA"), never "trained" or "training runs",
    or a model kind started ("kick off a logistic regression and a random forest")."""
    if PAST_TRAINING.search(reading.text):
        return False
    if reading.has("retrain"):
        return True
    if reading.kinds and _START_A_KIND.search(reading.text):
        return True
    return reading.has("train_verb") and bool(_IMPERATIVE_TRAIN.search(reading.text))
