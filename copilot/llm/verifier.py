"""Checks a clinical narrative against the numbers it is about.

The claims are computed in code from an explanation (probability, threshold, baseline,
every feature's value, unit, direction and contribution, warnings, model version). The
verifier reads the text the way a careful clinician would and reports each statement the
claims do not support:

* a number that is not a claimed value (within rounding), or a value with the wrong unit;
* a feature that the model does not have ("troponin raises risk");
* a direction that is the opposite of the claim ("cholesterol lowers risk" when it raises it);
* a probability other than the claimed one;
* a missing mandatory caveat: association not causation, the model version, and every
  input that is missing or outside the training range.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel

from model_service.cards import DatasetCard

PERCENT_TOLERANCE = 0.6  # percentage points: "44%" for 0.4418
VALUE_TOLERANCE = 0.051  # "2.3" for 2.25; contributions shown with two decimals
_UNIT_WORDS = {
    "mg/dl": "mg/dl",
    "mmol/l": "mmol/l",
    "mmhg": "mmHg",
    "bpm": "bpm",
    "mm": "mm",
    "years": "years",
    "year": "years",
    "vessels": "vessels",
    "vessel": "vessels",
}
_DIRECTION = re.compile(
    r"(?P<subject>[a-z][a-z0-9 \-/>().,]{0,80}?)\s+(?P<negation>(?:does|do|did) not\s+|doesn't\s+|"
    r"don't\s+|didn't\s+)?(?P<verb>raises|raised|raise|increases|increased|increase|pushes up|"
    r"push up|lowers|lowered|lower|reduces|reduced|reduce|decreases|decreased|decrease|pulls down|"
    r"pull down|is associated with higher|is associated with lower|are associated with higher|"
    r"are associated with lower)\s+(?:the\s+|his\s+|her\s+|their\s+|this\s+|the patient's\s+)?"
    r"(?:predicted\s+|estimated\s+)?risk"
)
_PRONOUNS = {"it", "this", "that", "which", "they", "these", "those", "each"}
MAX_VERIFIED_CHARACTERS = 4000  # a clinical summary is short; longer text is refused
_UP = {
    "raises",
    "raised",
    "raise",
    "increases",
    "increased",
    "increase",
    "pushes up",
    "push up",
    "is associated with higher",
    "are associated with higher",
}


class DriverClaim(BaseModel):
    feature: str
    display_name: str
    names: list[str]  # display name and synonyms, lower case
    value: Any
    unit: str | None
    direction: Literal["raises risk", "lowers risk", "no effect"]
    contribution: float
    rank: int


class Claims(BaseModel):
    """What a narrative about one explanation may say."""

    probability: float
    threshold: float
    base_probability: float
    drivers: list[DriverClaim]
    model_version: str
    flagged_features: list[str]  # missing or outside the training range: must be mentioned


def claims_from(explanation: dict[str, Any], card: DatasetCard) -> Claims:
    """Claims from an `explain_prediction` result (tools.predictions.Explanation)."""
    drivers = []
    for driver in explanation["drivers"]:
        feature = card.feature(driver["feature"])
        names = {
            feature.display_name.lower(),
            feature.name.lower(),
            *(s.lower() for s in feature.synonyms),
        }
        drivers.append(
            DriverClaim(
                feature=feature.name,
                display_name=feature.display_name,
                names=sorted(names, key=len, reverse=True),
                value=driver["value"],
                unit=feature.unit,
                direction=driver["direction"],
                contribution=driver["contribution"],
                rank=driver["rank"],
            )
        )
    flagged = sorted(
        {
            w["feature"]
            for w in explanation.get("warnings", [])
            if w["code"] in {"missing_imputed", "outside_training_range", "zero_read_as_missing"}
        }
    )
    return Claims(
        probability=explanation["probability"],
        threshold=explanation.get("threshold", 0.5),
        base_probability=explanation["base_probability"],
        drivers=drivers,
        model_version=str(explanation["model"]["version"]),
        flagged_features=flagged,
    )


def _feature_at(text: str, claims: Claims) -> DriverClaim | None:
    """The feature a phrase names (the longest name found), if any."""
    best: tuple[int, DriverClaim] | None = None
    for driver in claims.drivers:
        for name in driver.names:
            found = re.search(rf"(?<![a-z]){re.escape(name)}(?![a-z])", text)
            if found and (best is None or len(name) > best[0]):
                best = (len(name), driver)
    return best[1] if best else None


def _allowed_numbers(claims: Claims) -> list[tuple[float, float]]:
    """Every number a faithful narrative may state, with its tolerance."""
    allowed: list[tuple[float, float]] = []
    for probability in (claims.probability, claims.threshold, claims.base_probability):
        allowed.append((probability * 100, PERCENT_TOLERANCE))
        allowed.append((probability, 0.006))
    for driver in claims.drivers:
        if isinstance(driver.value, (int, float)) and not isinstance(driver.value, bool):
            allowed.append((float(driver.value), VALUE_TOLERANCE))
        allowed.append((driver.contribution, 0.006))
        allowed.append((abs(driver.contribution), 0.006))
        allowed.append((float(driver.rank), 0.0))
    allowed.append((float(claims.model_version), 0.0))
    allowed.extend((float(n), 0.0) for n in range(0, 4))  # "top three", "0 vessels" ...
    allowed.append((120.0, 0.0))  # the fasting-blood-sugar rule, part of a feature's name
    return allowed


def check(text: str, claims: Claims) -> list[str]:
    """Every statement in `text` the claims do not support (empty: faithful)."""
    if len(text) > MAX_VERIFIED_CHARACTERS:
        return [f"too long: {len(text)} characters (at most {MAX_VERIFIED_CHARACTERS})"]
    lowered = " ".join(text.lower().split())
    numbers_only = _without_names_holding_numbers(lowered, claims)
    return [
        *_numbers(numbers_only, claims),
        *_values_of_features(numbers_only, claims),
        *_directions(lowered, claims),
        *_probabilities(lowered, claims),
        *_caveats(lowered, claims),
    ]


def _without_names_holding_numbers(lowered: str, claims: Claims) -> str:
    """The text without feature names that contain numbers ("fasting blood sugar > 120
    mg/dl"), so their numbers are not read as values."""
    for driver in claims.drivers:
        for name in driver.names:
            if any(c.isdigit() for c in name):
                lowered = lowered.replace(name, driver.feature)
    return lowered


_VALUE_AFTER_NAME = r"(?:\s+(?:of|is|was|at|=|:))?\s*\(?([+-]?\d+(?:\.\d+)?)(?![\d.]*%)"


def _values_of_features(lowered: str, claims: Claims) -> list[str]:
    """A number written right after a feature's name must be that feature's value."""
    problems = []
    for driver in claims.drivers:
        if not isinstance(driver.value, (int, float)) or isinstance(driver.value, bool):
            continue
        for name in driver.names:
            pattern = rf"(?<![a-z]){re.escape(name)}(?![a-z]){_VALUE_AFTER_NAME}"
            for match in re.finditer(pattern, lowered):
                said = float(match.group(1))
                if abs(said - float(driver.value)) > VALUE_TOLERANCE:
                    problems.append(
                        f"wrong value: {driver.feature} is {driver.value}, the text says {said:g}"
                    )
    return problems


def _numbers(lowered: str, claims: Claims) -> list[str]:
    problems = []
    allowed = _allowed_numbers(claims)
    for match in re.finditer(
        r"(?<![\w.])([+-]?(?:\d+(?:\.\d+)?|\.\d+))\s*(%|mg/dl|mmol/l|mmhg|bpm|mm|"
        r"years?|vessels?)?(?![\w/])",
        lowered,
    ):
        value, unit, shown = float(match.group(1)), match.group(2), match.group(0).strip()
        percent = unit == "%"
        if not any(
            abs(value - a) <= t for a, t in allowed if not percent or t == PERCENT_TOLERANCE
        ):
            problems.append(f"unsupported number: {shown}")
        elif unit in _UNIT_WORDS:
            owners = [
                d
                for d in claims.drivers
                if isinstance(d.value, (int, float))
                and not isinstance(d.value, bool)
                and abs(float(d.value) - value) <= VALUE_TOLERANCE
            ]
            if owners and not any(
                (d.unit or "").lower() == _UNIT_WORDS[unit].lower() for d in owners
            ):
                expected = " or ".join(sorted({d.unit or "no unit" for d in owners}))
                problems.append(f"wrong unit: {shown} (expected {expected})")
    return problems


def _directions(lowered: str, claims: Claims) -> list[str]:
    problems = []
    for statement in re.split(r"(?<!\d)[.;:](?!\d)|\n", lowered):  # not inside "2.3"
        for match in _DIRECTION.finditer(statement):
            said = "raises risk" if match.group("verb") in _UP else "lowers risk"
            if match.group("negation"):
                problems.append(f"negated direction: '{match.group(0).strip()[-60:]}'")
                continue
            # "with age 63, cholesterol and ST depression raise risk": the subjects are the
            # parts after the last comma, joined by "and".
            subject = match.group("subject").rsplit(",", 1)[-1]
            for part in re.split(r"\s+(?:and|as well as|plus)\s+|\s*&\s*", subject):
                problems.extend(_direction_of(part, said, claims))
    return problems


def _direction_of(subject: str, said: str, claims: Claims) -> list[str]:
    driver = _feature_at(subject, claims)
    words = subject.split()
    if driver is None and (not words or words[-1] in _PRONOUNS):
        return []  # "it raises risk" refers back; the sentence before was checked
    if driver is None:
        return [f"unknown feature: '{subject.strip()[-40:]}' {said}"]
    if driver.direction != said:
        return [
            f"flipped direction: {driver.feature} {driver.direction}, "
            f"the text says it {said.split(maxsplit=1)[0]} it"
        ]
    return []


def _probabilities(lowered: str, claims: Claims) -> list[str]:
    problems = []
    for match in re.finditer(
        r"(risk|probability|chance|baseline|base rate|threshold)([^.%]{0,40}?)"
        r"(\d+(?:\.\d+)?)\s*%",
        lowered,
    ):
        named = f"{match.group(1)} {match.group(2)}"
        if "threshold" in named:
            what, target = "threshold", claims.threshold
        elif re.search(r"baseline|base rate|average", named):
            what, target = "baseline", claims.base_probability
        else:
            what, target = "probability", claims.probability
        value = float(match.group(3))
        if abs(value - target * 100) > PERCENT_TOLERANCE:
            problems.append(f"wrong {what}: {value:g}% (the model says {target:.0%})")
    return problems


def _caveats(lowered: str, claims: Claims) -> list[str]:
    problems = []
    if not re.search(r"association,? not causation|not caus|does not show caus", lowered):
        problems.append("missing caveat: the model shows association, not causation")
    version = re.escape(claims.model_version)
    if not re.search(rf"version {version}\b|\bv{version}\b", lowered):
        problems.append(f"missing caveat: the model version ({claims.model_version})")
    for feature in claims.flagged_features:
        driver = next(d for d in claims.drivers if d.feature == feature)
        if not any(re.search(rf"(?<![a-z]){re.escape(n)}(?![a-z])", lowered) for n in driver.names):
            problems.append(f"missing caveat: {feature} is missing or outside the training range")
    return problems


_NUMBER = re.compile(
    r"(?<![\w.])([+-]?)(\d{1,3}(?:,\d{3})+|\d+|(?=\.\d))(\.\d+)?(?:[eE]([+-]?\d{1,3}))?(%?)"
    r"(?![\w])"
)
# Keys whose values are identifiers or moments, not quantities a narrative may restate.
_NOT_QUANTITIES = re.compile(r"(^|_)(id|ids|at|since|url|sha256|timestamp|created|started)$")
_URL = re.compile(r"https?://\S+")
_ISO_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}.*)?$")


def _as_number(match: re.Match[str]) -> float:
    sign, whole, decimals, exponent, _ = match.groups()
    exponent = max(-300, min(300, int(exponent or 0)))  # "1e400" is a number, not a crash
    return float(f"{sign}{whole.replace(',', '') or '0'}{decimals or ''}e{exponent}")


def _numbers_in(value: Any, key: str = "") -> list[float]:
    """Every quantity inside a tool result: values, and numbers written inside its strings
    (a percentage written in a string counts as its fraction). Identifiers and moments
    (`*_id`, `*_at`, ISO dates) are not quantities."""
    if isinstance(value, bool) or value is None or _NOT_QUANTITIES.search(key):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, str):
        numbers = [] if _ISO_MOMENT.match(value) else _NUMBER.finditer(value)
        return [_as_number(m) / (100 if m.group(5) else 1) for m in numbers]
    if isinstance(value, dict):
        return [n for k, item in value.items() for n in _numbers_in(item, str(k))]
    if isinstance(value, (list, tuple)):
        return [n for item in value for n in _numbers_in(item, key)]
    return []


def _identifiers_in(value: Any, key: str = "") -> list[str]:
    """Strings of a result that a narrative may quote a prefix of (run ids, versions), and
    whole-number identifiers (`row_id: 920`)."""
    if isinstance(value, str):
        return [value.lower()]
    if isinstance(value, int) and not isinstance(value, bool) and _NOT_QUANTITIES.search(key):
        return [str(value)]
    if isinstance(value, dict):
        return [s for k, item in value.items() for s in _identifiers_in(item, str(k))]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in _identifiers_in(item, key)]
    return []


def unsupported_numbers(text: str, result: Any) -> list[str]:
    """Numbers in `text` that the tool result does not hold (as given, rounded as shown,
    or as a percentage of a fraction; a sign written out must match). Empty: every number
    shown comes from the result."""
    known = _numbers_in(result)
    identifiers = _identifiers_in(result)
    problems = []
    for match in _NUMBER.finditer(_URL.sub(" ", text)):  # a link's digits are no claim
        sign, _, decimals, exponent, percent = match.groups()
        shown = _as_number(match)
        places = len(decimals) - 1 if decimals else 0
        tolerance = 0.5 * 10.0 ** (max(-300, min(300, int(exponent or 0))) - places) * (1 + 1e-9)
        if percent:
            shown /= 100
            tolerance /= 100
        if sign:  # "+0.03" is not "-0.03"
            supported = any(abs(shown - n) <= tolerance for n in known)
        else:  # "fell by 3 points" for -0.03
            supported = any(abs(shown - abs(n)) <= tolerance for n in known)
        token = match.group(0).lower()  # a run id's prefix may read as one ("111047e6")
        quoted = not (sign or decimals or percent) and any(s.startswith(token) for s in identifiers)
        if not (supported or quoted):
            problems.append(f"unsupported number: {match.group(0)}")
    return problems
