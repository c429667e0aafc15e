"""Reading a request's words: one normal form (lower case, typos fixed against the card's
vocabulary), numbers in digits or words, sites, model kinds and counts, and a patient's
free text set apart (quoted passages and labelled notes are never read as requests)."""

from __future__ import annotations

import difflib
import re

from model_service.cards import DatasetCard
from model_service.risk_model import MODEL_KINDS

NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "zero": 0,
    "no": 0,
}

NUMBER = r"(-?\d+(?:\.\d+)?|" + "|".join(NUMBER_WORDS) + r")"

_KIND_WORDS = {
    "logistic_regression": ("logistic regression", "logistic", "logreg", "lr", "linear model"),
    "random_forest": ("random forest", "forest", "rf"),
    "xgboost": ("xgboost", "xgb", "gradient boosting", "boosted trees", "boosting"),
}

_SITE_WORDS = {
    "va": "VA Long Beach",
    "long beach": "VA Long Beach",
    "swiss": "Switzerland",
    "zurich": "Switzerland",
    "basel": "Switzerland",
    "hungarian": "Hungary",
    "budapest": "Hungary",
    "cleveland clinic": "Cleveland",
}

_KEYWORDS = frozenset(
    """
    predict risk probability latest older younger chance likelihood score explain explanation
    drivers factors contributions contributing reasons drift drifted shifted distribution
    quality compare comparison versus difference runs training history retrain refit promote
    promotion challenger champion rollback revert restore previous deploy deployed serving
    model version suppose instead patient cholesterol pressure asymptomatic typical atypical
    anginal angina depression vessels thallium reversible downsloping upsloping hypertrophy
    abnormality exercise fasting glucose diabetic female male woman logistic regression
    forest xgboost boosting cleveland hungary switzerland force override rank ranks ranked
    important importance matters biggest largest strongest feature features drifted driver
    factor reason contributor contributors
    """.split()
)

# A patient's free text: quoted passages of three words or more, and labelled notes.
_QUOTED = re.compile(
    r"(?:(?<=[\s:(])|^)(?:'[^']*\s[^']*\s[^']*'|\"[^\"]*\s[^\"]*\s[^\"]*\"|“[^”]*”|‘[^’]*’)"
)

_NOTE = re.compile(
    r"\(?\b(?:note|notes|comment|comments|remark|remarks|free[- ]text|wrote|writes|says|said)"
    r"\b[^:]{0,30}:.*$"
)


def _fix_typos(text: str, vocabulary: set[str]) -> str:
    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        if len(word) < 5 or word in vocabulary:
            return word
        # typos rarely change the first letter ("latest" must not become "test")
        same_start = [w for w in vocabulary if w[0] == word[0]]
        close = difflib.get_close_matches(word, same_start, n=1, cutoff=0.8)
        return close[0] if close else word

    return re.sub(r"[a-z]+", fix, text)


def number(token: str) -> float:
    return float(NUMBER_WORDS.get(token, token))


def normalise(text: str, card: DatasetCard) -> str:
    """Lower case, one space, dashes unified, typos fixed against the card's vocabulary."""
    lowered = " ".join(text.lower().replace("–", "-").replace("—", "-").split())
    vocabulary = (
        set(_KEYWORDS)
        | {
            word
            for f in card.features
            for name in (*f.synonyms, *f.value_words, f.display_name)
            for word in name.lower().split()
        }
        | {word for site in card.sites() for word in site.lower().split()}
    )
    return _fix_typos(lowered, vocabulary)


def without_notes(lowered: str) -> str:
    """The request without a patient's free text (quoted passages, labelled notes)."""
    return " ".join(_NOTE.sub(" ", _QUOTED.sub(" ", lowered)).split())


def sites_in(text: str, card: DatasetCard) -> list[str]:
    found: list[tuple[int, str]] = []
    for site in card.sites():
        position = text.find(site.lower())
        if position >= 0:
            found.append((position, site))
    for word, site in _SITE_WORDS.items():
        match = re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", text)
        if match and site in card.sites() and site not in [s for _, s in found]:
            found.append((match.start(), site))
    return [site for _, site in sorted(found)]


def kinds_in(text: str) -> list[str]:
    kinds = [
        kind
        for kind, words in _KIND_WORDS.items()
        if any(re.search(rf"(?<![a-z]){re.escape(w)}(?![a-z])", text) for w in words)
    ]
    return [kind for kind in MODEL_KINDS if kind in kinds]


def count_in(text: str) -> int | None:
    found = re.search(
        r"\b(?:last|latest|recent|past|previous)\s+(\d+|" + "|".join(NUMBER_WORDS) + r")\b", text
    )
    return int(number(found.group(1))) if found else None
