"""Reading a request's words: one normal form, numbers, sites, model kinds and counts, and a
patient's free text set apart (quoted passages and labelled notes are never read as requests).

The normal form comes first, before anything is read:

- Unicode NFKC (full-width letters, digits and colons become ASCII), invisible characters
  (zero-width spaces and joiners, soft hyphens, bidi marks: category Cf) removed, letters
  that only look Latin (Cyrillic and Greek confusables) mapped to the Latin letter, curly
  and angle quotes to ASCII quotes, dashes to "-"; so a note disguised with them is still
  a note, and a request typed with them still reads the same;
- lower case, one space between words;
- units in one spelling ("mmol / L" -> "mmol/l", "130mmHg" -> "130 mmhg": copilot.units);
- number words as digits ("twenty years older" -> "20 years older", "one hundred and
  twenty" -> "120");
- short words spelled as they sound ("wat wuld", "shud"), and typos fixed against the
  vocabulary of the card and the grammar ("cholesterl"); a common English word is never
  "fixed" ("talking" is not "taking", "heard" is not "heart").

Every pattern here is linear: no nested quantifiers over overlapping classes, bounded
repetitions, and quoted passages found by a scan rather than a regular expression.
"""

from __future__ import annotations

import difflib
import itertools
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache

from spellchecker import SpellChecker

from copilot import units
from copilot.llm.offline import patterns as rx
from model_service.cards import DatasetCard
from model_service.risk_model import MODEL_KINDS

_UNITS = {
    "zero": 0,
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
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}

# Kept as words by the normal form ("which one", "no vessels"), read as numbers where a
# number is expected.
NUMBER_WORDS = {"one": 1, "no": 0}

NUMBER = r"(-?\d{1,6}(?:\.\d{1,4})?|" + "|".join(NUMBER_WORDS) + r")(?![a-z0-9])"

_NUMBER_WORD = re.compile(
    r"(?<![a-z-])(?:(?P<tens>"
    + "|".join(_TENS)
    + r")(?:[ -](?P<unit>"
    + "|".join(u for u in _UNITS if _UNITS[u] < 10 and u != "zero")
    + r"))?|(?P<small>"
    + "|".join(u for u in sorted(_UNITS, key=len, reverse=True) if u != "one")
    # joined to its noun only by "-year(s)" ("a sixty-two-year-old woman")
    + r"))(?![a-z])(?!-(?!y(?:ea)?rs?\b))"
)

_KIND_WORDS = {
    "logistic_regression": ("logistic regression", "logistic", "logreg", "lr", "linear model"),
    "random_forest": ("random forest", "forest", "rf", "random forests", "forests"),
    "xgboost": ("xgboost", "xgb", "gradient boosting", "boosted trees", "boosting", "gbm"),
}

# What people call a site besides its name: demonyms, cities, short forms.
_SITE_WORDS = {
    "va": "VA Long Beach",
    "long beach": "VA Long Beach",
    "veterans": "VA Long Beach",
    "swiss": "Switzerland",
    "zurich": "Switzerland",
    "basel": "Switzerland",
    "hungarian": "Hungary",
    "budapest": "Hungary",
    "cleveland clinic": "Cleveland",
}

# Letters that look Latin but are not (Cyrillic, Greek), and punctuation with an ASCII twin.
_CONFUSABLES = str.maketrans(
    {
        **dict.fromkeys("аАɑα", "a"),
        **dict.fromkeys("вВβ", "b"),
        **dict.fromkeys("сСϲ", "c"),
        **dict.fromkeys("ԁ", "d"),
        **dict.fromkeys("еЕёЁεΕ", "e"),
        **dict.fromkeys("һ", "h"),
        **dict.fromkeys("іІїιΙ", "i"),
        **dict.fromkeys("јЈ", "j"),
        **dict.fromkeys("кКκΚ", "k"),
        **dict.fromkeys("мМΜ", "m"),
        **dict.fromkeys("нНΗ", "h"),
        **dict.fromkeys("ηπ", "n"),
        **dict.fromkeys("оОοΟσ", "o"),
        **dict.fromkeys("рРρΡ", "p"),
        **dict.fromkeys("ѕЅ", "s"),
        **dict.fromkeys("тТτΤ", "t"),
        **dict.fromkeys("υ", "u"),
        **dict.fromkeys("νѵ", "v"),
        **dict.fromkeys("ԝ", "w"),
        **dict.fromkeys("хХχΧ", "x"),
        **dict.fromkeys("уУγΥ", "y"),
        **dict.fromkeys("ΖΖ", "z"),
        **dict.fromkeys("‘’‚‛′`´", "'"),
        **dict.fromkeys("“”„‟″«»", '"'),
        **dict.fromkeys("‐‑‒–—―−", "-"),
        **dict.fromkeys("：﹕︓", ":"),
    }
)

_GRAMMAR_WORDS = frozenset(
    """
    predict risk probability latest older younger chance likelihood score explain explanation
    drivers factors contributions contributing reasons drift drifted shifted distribution
    quality compare comparison versus difference runs training history retrain refit promote
    promotion challenger champion rollback revert restore previous deploy deployed serving
    model version suppose instead patient patients cholesterol pressure asymptomatic typical
    atypical anginal angina depression vessels thallium reversible downsloping upsloping
    hypertrophy abnormality exercise fasting glucose diabetic female male woman logistic
    regression forest xgboost boosting cleveland hungary switzerland force override rank ranks
    ranked important importance matters biggest largest strongest feature features driver
    factor reason contributor contributors sensitivity specificity accuracy precision
    calibration performance metrics production experiments lower higher decreased increased
    reduced raised fewer switzerland hungarian prediction predictions rescore rescored
    rescoring rerun reruns recheck recompute recalculate reassess decade decades topped
    """.split()
)


# English words the frequency list does not hold as common (contractions cut at the
# apostrophe, spellings of the trade), never "fixed" into a word of the grammar.
_ENGLISH = frozenset(
    """
    weren doesn haven couldn wouldn shouldn mustn needn layman summarise summarize
    unbiased
    """.split()
)

# How often a word must occur in the English frequency list (pyspellchecker's, counted
# over about 1.6 billion words of subtitles) to count as a common word: about once in 1.6
# million words, some 18,000 words of four letters or more. A rarer word is more likely a
# typo of ours than meant ("ballance", "aegina").
_COMMON_AT = 1_000


@cache
def _common_english() -> frozenset[str]:
    """The common English words: loaded once, on the first request read."""
    frequencies = SpellChecker(language="en", distance=1).word_frequency
    return frozenset(w for w, n in frequencies.items() if n >= _COMMON_AT and w.isalpha())


def english(word: str) -> bool:
    """Whether a word is common English, never a typo to fix ("these" is not "three",
    "large" is not "largest", "feeling" is not "fueling")."""
    return word in _ENGLISH or word in _common_english()


# Short words of every sentence, never "fixed" by a neighbour ("her max hr" is not "hr max").
_SHORT_ENGLISH = frozenset(
    """
    her his him she he they them the a an and but for from was were are is not its our
    you your all any can did does has had may now per who why how too off out own
    also away been best both done each even here into just less more most much must next
    over same such sure than that then upon very what when will with
    """.split()
)


def known_words(*texts: str) -> None:
    """Add the words of the grammar to the vocabulary typos are fixed against, so that a
    word the grammar reads ("raise", "diabetics") is never "fixed" into a neighbour."""
    words = {w for text in texts for w in rx.findall(r"[a-z]{5,}", text)}
    if not words <= _EXTRA_WORDS:
        _EXTRA_WORDS.update(words)
        _BY_CARD.clear()
        _closest.cache_clear()


# "one hundred and twenty", "a hundred sixty-five", "two hundred" (heart rates, pressures,
# cholesterol said in words); what follows "hundred" is read by _NUMBER_WORD.
_HUNDREDS = re.compile(
    r"(?<![a-z-])(?P<hundreds>one|a|two|three) hundred"
    r"(?:(?: and)? (?P<rest>(?:" + "|".join(_TENS) + r")(?:[ -][a-z]{3,5})?|[a-z]{3,9}))?(?![a-z-])"
)


def _hundreds(match: re.Match[str]) -> str:
    hundreds = {"one": 1, "a": 1, "two": 2, "three": 3}[match.group("hundreds")]
    rest = match.group("rest") or ""
    tail = _NUMBER_WORD.fullmatch(rest) if rest else None
    if rest and tail is None:  # "a hundred patients": the word after is no number
        return f"{hundreds * 100} {rest}"
    return str(hundreds * 100 + (int(_digits(tail)) if tail else 0))


def number(token: str) -> float:
    return float(NUMBER_WORDS.get(token, token))


def _digits(match: re.Match[str]) -> str:
    if match.group("small"):
        return str(_UNITS[match.group("small")])
    value = _TENS[match.group("tens")] + (_UNITS[match.group("unit")] if match.group("unit") else 0)
    return str(value)


def plain(text: str) -> str:
    """Unicode folded to the ASCII a person meant, lower case, one space between words."""
    folded = unicodedata.normalize("NFKC", text)
    folded = "".join(c for c in folded if unicodedata.category(c) != "Cf")
    folded = folded.translate(_CONFUSABLES).lower()
    return " ".join(folded.split())


_BY_CARD: dict[tuple[str, str], object] = {}
_EXTRA_WORDS: set[str] = set()


def _vocabulary(card: DatasetCard) -> frozenset[str]:
    key = ("vocabulary", card.name)
    if key not in _BY_CARD:
        _BY_CARD[key] = _words_of(card)
    cached = _BY_CARD[key]
    assert isinstance(cached, frozenset)
    return cached


def _words_of(card: DatasetCard) -> frozenset[str]:
    return (
        _GRAMMAR_WORDS
        | _EXTRA_WORDS
        | {
            word
            for f in card.features
            for name in (*f.synonyms, *f.value_words, f.display_name)
            for word in rx.findall(r"[a-z]+", name.lower())  # "down-sloping": "sloping" too
        }
        # a feature's name of two words typed as one ("maxhr", "restingbp"): a word, no typo
        | {
            "".join(rx.findall(r"[a-z]+", name.lower()))
            for f in card.features
            for name in f.synonyms
            if len(rx.findall(r"[a-z]+", name)) == 2
        }
        | {word for site in sites(card) for word in site.lower().split()}
        # the other names of sites ("basel", "budapest") are words, not typos of ours
        | {word for alias in _SITE_WORDS for word in alias.split()}
    )


@lru_cache(maxsize=4096)
def _closest(word: str, vocabulary: frozenset[str]) -> str:
    # typos rarely change the first letter ("latest" must not become "test")
    same_start = [w for w in vocabulary if w[0] == word[0] and abs(len(w) - len(word)) <= 2]
    close = difflib.get_close_matches(word, same_start, n=1, cutoff=0.8)
    if not close and len(word) >= 6:
        # two letters swapped ("exersice", "depresison"): the same letters as a known word
        close = [w for w in same_start if len(w) == len(word) and sorted(w) == sorted(word)][:1]
    if not close or _stem_of(word, close[0]):
        return word  # nothing close, or the word is the stem of a known word ("large")
    return close[0]


def _stem_of(word: str, known: str) -> bool:
    """Whether `known` is `word` inflected ("largest" of "large", "decades" of "decade"):
    a word whose inflection is known is a word, not a typo."""
    rest = known[len(word) :] if known.startswith(word) else None
    if rest is None and word.endswith("e") and known.startswith(word[:-1]):
        rest = known[len(word) - 1 :]  # "large" -> "larger": the e is shared
    return rest in {"s", "es", "d", "ed", "r", "er", "st", "est", "ing", "ly", "y"}


_SUFFIXES = ("ing", "ed", "es", "s", "er", "ly")


def _inflected(word: str, vocabulary: frozenset[str]) -> bool:
    """Whether a word is a known word with an inflection ("drifting", "shifted")."""
    return any(word.endswith(suffix) and word[: -len(suffix)] in vocabulary for suffix in _SUFFIXES)


def _swapped(word: str, vocabulary: frozenset[str]) -> str:
    """A word of four letters that is a known word with two neighbouring letters swapped
    ("mael", "rsik", "pian"), the first letter kept: too short for the closeness the typo
    fixer asks of longer words, it is fixed only to a word with the very same letters."""
    for i in range(1, len(word) - 1):
        known = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        if known != word and known in vocabulary:
            return known
    return word


def _fix_typos(text: str, vocabulary: frozenset[str]) -> str:
    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        if word in vocabulary or english(word):
            return word
        if len(word) == 4:
            return _swapped(word, vocabulary)
        if len(word) < 5 or len(word) > 20:
            return word
        if f"{word}s" in vocabulary or _inflected(word, vocabulary):
            return word  # an inflection of a known word ("smoker", "drifting"), not a typo
        return _closest(word, vocabulary)

    return rx.sub(r"[a-z]+", fix, text)


def _card_phrases(card: DatasetCard) -> frozenset[str]:
    """The card's names of two words ("heart rate", "blood pressure", "st depression")."""
    key = ("phrases", card.name)
    if key not in _BY_CARD:
        _BY_CARD[key] = frozenset(
            name.lower()
            for f in card.features
            for name in (*f.synonyms, f.display_name)
            if rx.fullmatch(r"[a-z]+ [a-z]+", name.lower())
        )
    cached = _BY_CARD[key]
    assert isinstance(cached, frozenset)
    return cached


def _fix_short_typos(text: str, card: DatasetCard) -> str:
    """A word of three or four letters one letter off a word of one of the card's two-word
    names, beside that name's other word ("max heart rat 170", "blod pressure 125"): too
    short to fix alone (the typo fixer reads words of five letters or more), it is fixed by
    its neighbour."""
    after_first, before_second, seconds, firsts = _short_typo_patterns(card)

    def fixed(word: str, candidates: list[str]) -> str:
        if word in _SHORT_ENGLISH:  # "heat rate" is "heart rate" there, common as "heat" is
            return word
        for known in candidates:
            if known != word and known[0] == word[0] and _one_letter_off(word, known):
                return known
        return word

    text = after_first.sub(lambda m: f"{m.group(1)} {fixed(m.group(2), seconds[m.group(1)])}", text)
    return before_second.sub(
        lambda m: f"{fixed(m.group(1), firsts[m.group(2)])} {m.group(2)}", text
    )


_ShortTypos = tuple[re.Pattern[str], re.Pattern[str], dict[str, list[str]], dict[str, list[str]]]
_SHORT_TYPOS: dict[str, _ShortTypos] = {}


def _short_typo_patterns(card: DatasetCard) -> _ShortTypos:
    """A short word after a two-word name's first word, or before its second word, and the
    words each of them may stand for."""
    if card.name not in _SHORT_TYPOS:
        seconds: dict[str, list[str]] = {}  # a name's first word -> its second words
        firsts: dict[str, list[str]] = {}  # a name's second word -> its first words
        for phrase in sorted(_card_phrases(card)):
            one, two = phrase.split()
            seconds.setdefault(one, []).append(two)
            firsts.setdefault(two, []).append(one)

        def alternatives(words: dict[str, list[str]]) -> str:
            return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))

        _SHORT_TYPOS[card.name] = (
            re.compile(rf"(?<![a-z])({alternatives(seconds)}) ([a-z]{{3,4}})(?![a-z])"),
            re.compile(rf"(?<![a-z])([a-z]{{3,4}}) ({alternatives(firsts)})(?![a-z])"),
            seconds,
            firsts,
        )
    return _SHORT_TYPOS[card.name]


def _one_letter_off(word: str, known: str) -> bool:
    """One letter added, dropped or changed ("rat" of "rate", "blod" of "blood")."""
    if abs(len(word) - len(known)) > 1:
        return False
    return difflib.SequenceMatcher(None, word, known).ratio() >= 0.75


# Hundreds said as a clinician reads them out: "one forty" (140), "two fifty" (250), "one
# twenty five" (125), "one eighteen" (118: a teen after the hundreds).
_TEENS = {word: value for word, value in _UNITS.items() if 10 <= value <= 19}
_SPOKEN_HUNDREDS = re.compile(
    r"(?<![a-z-])(?P<hundreds>one|two) (?:(?P<teen>"
    + "|".join(_TEENS)
    + r")|(?P<tens>"
    + "|".join(_TENS)
    + r")"
    r"(?:[ -](?P<unit>" + "|".join(u for u in _UNITS if 0 < _UNITS[u] < 10) + r"))?)(?![a-z-])"
)


def _spoken(match: re.Match[str]) -> str:
    hundreds = {"one": 100, "two": 200}[match.group("hundreds")]
    if match.group("teen"):
        return str(hundreds + _TEENS[match.group("teen")])
    unit = _UNITS[match.group("unit")] if match.group("unit") else 0
    return str(hundreds + _TENS[match.group("tens")] + unit)


# What a speaker says while thinking, as dictation writes it down ("um", "uh", "erm", and
# "like" as a filler: "so like sixty", "went down by like twenty", "like, what is"): never
# a word of the request. "like" stays where it is a verb or a comparison ("would like",
# "looks like", "patients like him").
_FILLERS = re.compile(r"(?<![a-z'-])(?:u+m+|u+h+m*|e+r+m+|e+r+|h+m+)(?![a-z'-]),?")
_FILLER_LIKE = re.compile(
    r"(?<![a-z'-])(so|by|is|was|of|about|around|and|but|okay|ok|just|at|to) like,? |^like,? "
)


def _without_fillers(text: str) -> str:
    """The dictated request without its fillers (_FILLERS, _FILLER_LIKE)."""
    text = _FILLER_LIKE.sub(lambda m: f"{m.group(1) or ''} ", _FILLERS.sub(" ", text))
    return " ".join(text.split())


# A feature's one-word name said or typed in pieces ("old peak", "trest b p", "b p"): the
# pieces joined when together they are one of the card's one-word names, and none of them
# is a number.
_PIECE = re.compile(r"[a-z]{1,6}")
_MOST_PIECES = 4


def _one_word_names(card: DatasetCard) -> frozenset[str]:
    key = ("one-word names", card.name)
    if key not in _BY_CARD:
        _BY_CARD[key] = frozenset(
            name.lower()
            for f in card.features
            for name in (f.name, *f.synonyms)
            if rx.fullmatch(r"[a-z]{2,}", name.lower())
        )
    cached = _BY_CARD[key]
    assert isinstance(cached, frozenset)
    return cached


def _spaced_names_joined(text: str, card: DatasetCard) -> str:
    """`text` with a card name said in pieces joined (see _one_word_names)."""
    names = _one_word_names(card)
    words = text.split(" ")
    out: list[str] = []
    i = 0
    while i < len(words):
        for size in range(_MOST_PIECES, 1, -1):
            pieces = words[i : i + size]
            if len(pieces) == size and all(_PIECE.fullmatch(p) for p in pieces):
                joined = "".join(pieces)
                if joined in names and not any(p in names for p in pieces):
                    out.append(joined)
                    i += size
                    break
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)


# A category's word cut short as clinicians write it ("asympt", "typ angina", "typ CP"): a
# piece of three to eight letters that only one of the card's long one-word category words
# starts with, and that is no word of the grammar or of English. A piece of three letters
# says too little alone ("thal rev"): it is read only when a word of its own feature follows
# ("typ angina", "typ cp").
_CUT = re.compile(r"(?<![a-z'-])[a-z]{3,8}(?![a-z'-])")
_CUT_WORDS = 7  # only long category words are written cut short ("asymptomatic", "typical")
_SHORT_CUT = 3
_NEXT_WORD = re.compile(r" ([a-z]+)")


def _category_words(card: DatasetCard) -> dict[str, frozenset[str]]:
    """The card's long one-word category words, each with the words of its own feature
    (its names and the words of its categories)."""
    key = ("category words", card.name)
    if key not in _BY_CARD:
        found: dict[str, frozenset[str]] = {}
        for f in card.features:
            if f.kind != "categorical" or f.name == "sex":
                continue
            said = [w.lower() for w in (f.name, *f.synonyms, *f.value_words)]
            own = frozenset(word for phrase in said for word in rx.findall(r"[a-z]+", phrase))
            for word in (w.lower() for w in f.value_words):
                if word.isalpha() and word.isascii() and len(word) >= _CUT_WORDS:
                    found[word] = own
        _BY_CARD[key] = found
    cached = _BY_CARD[key]
    assert isinstance(cached, dict)
    return cached


def _truncations_expanded(text: str, card: DatasetCard) -> str:
    """`text` with category words cut short written out (see _category_words)."""
    words = _category_words(card)
    vocabulary = _vocabulary(card)

    def expanded(match: re.Match[str]) -> str:
        cut = match.group(0)
        if cut in vocabulary or cut in _ENGLISH or cut in _SHORT_ENGLISH:
            return cut
        starting = [w for w in words if w.startswith(cut) and w != cut]
        if len(starting) != 1:
            return cut
        if len(cut) == _SHORT_CUT:
            after = _NEXT_WORD.match(text, match.end())
            if after is None or after.group(1) not in words[starting[0]]:
                return cut
        return starting[0]

    return _CUT.sub(expanded, text)


# A change said as a fraction ("by a quarter", "by half"): as a percentage.
_FRACTIONS = {"half": 50, "third": 33, "quarter": 25, "fifth": 20, "tenth": 10}
_FRACTION = re.compile(r"\bby (?:a |one )?(" + "|".join(_FRACTIONS) + r")\b")


# Short words typed as they sound or with a letter dropped, which the typo fixer (words of
# five letters or more) never sees: the question words and auxiliaries a request is built on.
_CHAT_SPELLINGS = {
    "wat": "what",
    "wht": "what",
    "whta": "what",
    "wot": "what",
    "wuld": "would",
    "woud": "would",
    "wud": "would",
    "wld": "would",
    "cud": "could",
    "culd": "could",
    "coud": "could",
    "shud": "should",
    "shld": "should",
    "hw": "how",
    "meen": "mean",
    "meens": "means",
    "doe": "does",
    "pls": "please",
    "plz": "please",
}
# A clinician's shorthand for the words around the values ("all pts w/ FBS pos", "58M hx
# smoking", "grp risk"): written out. The values' own short forms ("yo", "asx", "FBS")
# are the card's words and stay.
_CLINICAL_SHORTHAND = {
    "pt": "patient",
    "pts": "patients",
    "pt's": "patient's",
    "grp": "group",
    "grps": "groups",
    "w/": "with",
    "w/o": "without",
    "hx": "history",
    "h/o": "history of",
}
_SHORTHAND = re.compile(
    r"(?<![a-z0-9'/-])(?:"
    + "|".join(re.escape(w) for w in _CLINICAL_SHORTHAND)
    + r")(?![a-z0-9'/-])"
)
_CHAT_WORD = re.compile(r"(?<![a-z'-])(?:" + "|".join(_CHAT_SPELLINGS) + r")(?![a-z'-])")


# "does" typed as "dose" where a question needs its verb ("what dose thalach mean", "how
# dose oldpeak work"): a dose is never asked what it means or stands for.
_DOES = re.compile(
    r"\b(what|how|why|where|which) dose\b(?= (?:[a-z0-9'-]{1,20} ){1,3}(?:mean|stand|refer|"
    r"measure|represent|indicate|tell|show|work|matter|affect|count|do)\b)"
)


# A record written with slashes ("52/M/non-anginal/BP 128/chol 204/FBS no"): a slash with a
# word on one side separates entries; a number on both sides ("145/90") and the units and
# short forms written with one ("mg/dl", "y/o", "n/a") stay.
_SLASH = re.compile(r"(?<=[a-z0-9+.-]) ?/ ?(?=[a-z0-9+.-])")
_SLASHED_WORDS = frozenset(
    "y/o mg/dl mmol/l n/a and/or w/o s/p mm/hg beats/min b/p st/t either/or his/her he/she".split()
)
_ENTRY = re.compile(r"[a-z0-9+.-]{1,20}")


def _slash_record(text: str) -> str:
    """A record written with slashes as a list with commas, when two or more slashes
    separate entries."""
    separators = []
    for slash in itertools.islice(_SLASH.finditer(text), 40):
        left = _ENTRY.findall(text[max(0, slash.start() - 20) : slash.start()])
        right = _ENTRY.match(text, slash.end())
        if not left or right is None:
            continue
        pair = f"{left[-1]}/{right.group(0)}"
        numbers = left[-1][-1].isdigit() and right.group(0)[0].isdigit()
        if not numbers and pair not in _SLASHED_WORDS:
            separators.append(slash.span())
    if len(separators) < 2:
        return text
    for start, end in reversed(separators):
        text = f"{text[:start]}, {text[end:]}"
    return text


def normalise(text: str, card: DatasetCard) -> str:
    """The normal form every reader starts from (see the module docstring)."""
    lowered = _CHAT_WORD.sub(lambda m: _CHAT_SPELLINGS[m.group(0)], _without_fillers(plain(text)))
    lowered = _SHORTHAND.sub(lambda m: _CLINICAL_SHORTHAND[m.group(0)], lowered)
    lowered = _truncations_expanded(_spaced_names_joined(lowered, card), card)
    lowered = _DOES.sub(lambda m: f"{m.group(1)} does", lowered)
    lowered = _slash_record(units.spelled(lowered))
    lowered = _SPOKEN_HUNDREDS.sub(_spoken, _HUNDREDS.sub(_hundreds, lowered))
    lowered = _NUMBER_WORD.sub(_digits, lowered)
    lowered = _FRACTION.sub(lambda m: f"by {_FRACTIONS[m.group(1)]}%", lowered)
    return _fix_short_typos(_fix_typos(lowered, _vocabulary(card)), card)


_QUOTES = {"'": "'", '"': '"'}

_NOTE = re.compile(
    r"\(?\b(?:note|notes|comment|comments|remark|remarks|free[- ]text|wrote|writes|says|said|"
    r"memo|message from|instructions? from)\b[^:]{0,30}:.*$"
)


def _quoted_spans(text: str) -> list[tuple[int, int]]:
    """Quoted passages of three words or more, by one scan: a quote opens at the start or
    after a space, colon or parenthesis and closes at the next same quote (an unclosed one
    runs to the end)."""
    spans: list[tuple[int, int]] = []
    i, n = 0, len(text)
    while i < n:
        quote = text[i]
        if quote in _QUOTES and (i == 0 or text[i - 1] in " :(["):
            end = text.find(_QUOTES[quote], i + 1)
            stop = n if end < 0 else end + 1
            if text.count(" ", i, stop) >= 2:
                spans.append((i, stop))
                i = stop
                continue
        i += 1
    return spans


def without_notes(lowered: str) -> str:
    """The request without a patient's free text (quoted passages, labelled notes)."""
    kept, start = [], 0
    for begin, end in _quoted_spans(lowered):
        kept.append(lowered[start:begin])
        start = end
    kept.append(lowered[start:])
    return " ".join(_NOTE.sub(" ", " ".join(kept)).split())


# Courtesies and hedges around a request whose words would read as one ("I might be wrong,
# but...": no mistakes; "sorry to bother you": no correction; "if it's no trouble": no
# problem to check): what people say before asking, never the request.
_HEDGES = re.compile(
    r"\b(?:(?:i|we) (?:might|may|could|can) (?:well |easily )?be (?:wrong|mistaken)"
    r"(?: (?:here|about (?:this|that)|on (?:this|that)))?|correct me if (?:i'?m|i am) wrong|"
    r"if (?:i'?m|i am) not mistaken|unless (?:i'?m|i am) mistaken|"
    r"sorry (?:if|in case) (?:this|that|it)(?:'s| is) (?:a |an )?(?:silly|dumb|stupid|naive|"
    r"basic|obvious|odd) (?:question|request)|forgive (?:the|my|this) (?:naive|silly|dumb|basic|"
    r"obvious) (?:question|request)|no (?:problem|problems|worries|bother) if not|"
    r"if (?:it'?s|it is) (?:not too much|no|not a) (?:trouble|problem|bother)|"
    r"if (?:it|that) (?:isn'?t|is not) (?:too much )?(?:trouble|a problem|a bother)|"
    r"sorry (?:to (?:bother|trouble|pester|disturb|be a pain|be a nuisance)(?: you)?|"
    r"for (?:the|any) (?:bother|trouble|hassle|inconvenience)))\b"
)


def without_hedges(lowered: str) -> str:
    """The request without the courtesies and hedges around it (_HEDGES)."""
    return " ".join(_HEDGES.sub(" ", lowered).split())


def sites(card: DatasetCard) -> tuple[str, ...]:
    """The card's sites (read once per card: the data is read to list them)."""
    key = ("sites", card.name)
    if key not in _BY_CARD:
        _BY_CARD[key] = tuple(card.sites())
    cached = _BY_CARD[key]
    assert isinstance(cached, tuple)
    return cached


def sites_in(text: str, card: DatasetCard) -> list[str]:
    return [site for _, site in site_mentions(text, card)]


def site_mentions(text: str, card: DatasetCard) -> list[tuple[int, str]]:
    """Where each site is first named (its name or a word for it), in the order said."""
    found: list[tuple[int, str]] = []
    known = sites(card)
    for site in known:
        match = rx.search(rf"(?<![a-z]){re.escape(site.lower())}(?![a-z])", text)
        if match:
            found.append((match.start(), site))
    for word, site in _SITE_WORDS.items():
        match = rx.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", text)
        if match and site in known and site not in [s for _, s in found]:
            found.append((match.start(), site))
    return sorted(found)


def kinds_in(text: str) -> list[str]:
    kinds = [
        kind
        for kind, words in _KIND_WORDS.items()
        if any(rx.search(rf"(?<![a-z]){re.escape(w)}(?![a-z])", text) for w in words)
    ]
    return [kind for kind in MODEL_KINDS if kind in kinds]


def count_in(text: str) -> int | None:
    """N of "the last N", "the 3 latest", "the most recent 4", "just 3" (None when not
    said)."""
    found = rx.search(
        r"\b(?:last|latest|recent|past|previous|newest|most recent)\s(\d{1,3})\b|"
        r"\b(\d{1,3})\s(?:latest|last|most recent|newest|recent|previous)\b|"
        r"\b(\d{1,3})\s(?:training\s)?(?:runs|experiments|trainings)\b|"
        # "newest first, just 3", "only 4 please", "limit it to 2"
        r"\b(?:just|only|limit(?:ed)?(?: it)? to)\s(?:the\s)?(\d{1,2})\b(?!\s?(?:%|[a-z]))",
        text,
    )
    if not found:
        return None
    return int(next(g for g in found.groups() if g is not None))


_DAYS = {"day": 1, "week": 7, "fortnight": 14, "month": 30, "quarter": 91, "year": 365}

_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
known_words(" ".join(_MONTHS))  # "since 1 march" is a date, never "match"
_MONTH_NAME = "|".join([*_MONTHS, *(m[:3] for m in _MONTHS if m != "may"), "sept"])
# "since October", "in November", "since 1 November", "since November 3rd", "from nov 1"
_MONTH_SAID = re.compile(
    r"\b(?:since|in|from|during|throughout|after) (?:early |mid |late |the )?"
    rf"(?:(?P<day>\d{{1,2}})(?:st|nd|rd|th)? (?:of )?)?(?P<month>{_MONTH_NAME})\b\.?"
    r"(?: (?P<day2>\d{1,2})(?:st|nd|rd|th)?\b)?"
)


def _calendar_start(text: str, now: datetime) -> str | None:
    """A start said by the calendar: a month ("since October"), the start of this month or
    year, today."""
    month = _MONTH_SAID.search(text)
    if month:
        return _month_start(month, now)
    start = rx.search(
        r"\b(?:since|from) (?:the )?(?:start|beginning) of (?:the |this )?(month|year)\b", text
    )
    if start:
        first = now.replace(day=1) if start.group(1) == "month" else now.replace(month=1, day=1)
        return first.date().isoformat()
    if rx.search(r"\b(?:since|from) (?:this morning|today)\b|\btoday'?s\b", text):
        return now.date().isoformat()
    return None


def _month_start(said: re.Match[str], now: datetime) -> str:
    """The day a month said starts from: that day of the month's last occurrence up to now
    ("since October" in December: October 1st of this year; in February: of last year)."""
    name = said.group("month")
    month = next(i for i, m in enumerate(_MONTHS, 1) if m.startswith(name[:3]))
    day = int(said.group("day") or said.group("day2") or 1)
    year = now.year if month <= now.month else now.year - 1
    try:
        return datetime(year, month, day, tzinfo=UTC).date().isoformat()
    except ValueError:  # "since 31 February": the month's first day
        return datetime(year, month, 1, tzinfo=UTC).date().isoformat()


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def since_in(text: str, today: datetime | None = None) -> str | None:
    """The start of "since 2026-11-01 08:00", "since Monday", "since yesterday", "in the last
    7 days", "this week" as ISO 8601 (None when not said)."""
    exact = rx.search(r"\bsince\s(\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2})?)?)", text)
    if exact:
        return exact.group(1).replace(" ", "T")
    now = (today or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    day = rx.search(r"\bsince\s(?:last\s)?(" + "|".join(_WEEKDAYS) + r")\b", text)
    if day:
        back = (now.weekday() - _WEEKDAYS.index(day.group(1))) % 7 or 7
        return (now - timedelta(days=back)).date().isoformat()
    if rx.search(r"\bsince yesterday\b", text):
        return (now - timedelta(days=1)).date().isoformat()
    calendar = _calendar_start(text, now)
    if calendar:
        return calendar
    span = rx.search(
        r"\b(?:last|past|previous|recent)\s(?:(\d{1,3})\s)?"
        r"(day|week|fortnight|month|quarter|year)s?\b|\bthis (week|fortnight|month|quarter|year)\b",
        text,
    )
    if span:
        unit = span.group(2) or span.group(3)
        count = int(span.group(1) or 1)
        days = _DAYS[unit] * count
        return (now - timedelta(days=days)).date().isoformat()
    return None
