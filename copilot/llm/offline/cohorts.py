"""Questions about groups of patients and the data, read into the cohort tools' calls.

A cohort is read from the words the card gives its features: "women" (sex), a site's
name, "over 60" (age when no other feature is named before it), "chol >= 240",
"oldpeak > 2", "between 40 and 60", "aged 50-60", and the categorical and yes/no values a
patient's description would use ("exercise angina", "typical angina", "diabetics"). The
request then picks the tool:

   counterfactual        an ask for changes ("what would it take", "smallest change", "which
                         changes", "how can she lower") with a goal ("under the threshold",
                         "low risk", "no longer flagged", "below 30%"): for a row, a patient
                         described in the same request, or the last prediction
   cohort_what_if        a change (add or set) said of a group: "every woman's", "everyone's",
                         "the whole dataset", "how many labels would flip", or a group with
                         "what if/suppose/imagine"
   show_rows             show row 12, fetch records 3 and 7, how likely is data point id 33
                         to have heart disease (a row by any word for one: instance, sample)
   define_feature        what does oldpeak mean, what is thal, how is ca coded (card words)
   model_mistakes        where does it make mistakes, false negatives among women
   feature_interactions  which features interact
   feature_importance    most important features (for women), which inputs carry the most
                         weight; drivers/risk factors said of a group or overall
   model_performance     how accurate is the model on women (a cohort named)
   describe_data         women over 60 at Hungary, how many diabetics have exercise angina,
                         a statistic of named features ("distribution of chest pain types in
                         Hungary", "how much cholesterol data is missing")

A question about one patient (a pronoun, "a 60 year old woman") is left to the other frames.
A group referred back to ("on those", "for them", "their cholesterol") is the last cohort
question's (`earlier`), and a row's counterfactual may follow the row just shown (`row`).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from copilot.llm.offline import patterns as rx
from copilot.llm.offline.changes import relative_changes
from copilot.llm.offline.patients import category_mentions, parse_patient
from copilot.llm.offline.text import (
    NUMBER,
    known_words,
    number,
    site_mentions,
    sites,
)
from model_service.cards import DatasetCard, Feature

ToolCall = tuple[str, dict[str, Any]]
Conditions = list[dict[str, Any]]

_FEMALE = re.compile(r"\b(?:women|woman|females?|ladies|girls)\b")
_MALE = re.compile(r"\b(?:men|man|males?|gentlemen|boys)\b")
_GROUP = re.compile(
    r"\b(?:patients|people|women|men|males|females|persons|individuals|cases|cohort|"
    r"population|group|subgroup|everyone|everybody|those|diabetics|rows|records|entries|"
    # a dataset's words for its rows, as people asking about a model use them
    r"instances|samples|examples|observations|data points|subjects)\b"
)
_ONE_PATIENT = re.compile(
    r"\b(?:he|his|him|she|her|this patient|the patient|that patient|this one)\b|"
    r"\b(?:a|an|one|this|that|the|my) (?:\d{1,3} ?(?:yo|y/o|year old|years old|-year-old) )?"
    r"(?:man|woman|patient|gentleman|lady|male|female|guy|person)\b"
    # "the female patients": an adjective of a group, not one patient
    r"(?! (?:patients|people|cases|persons|individuals|subjects|population|cohort))|"
    r"\b\d{1,3} ?(?:yo|y/o)\b"
)
_EVERYONE = re.compile(
    r"\b(?:everyone|everybody|all of them|everyone's|everybody's|if all)\b|"
    # a value taken from the whole group: "suppose nobody at Cleveland had diabetes"
    r"\b(?:nobody|no one|none of (?:them|the [a-z]+))\b|"
    # "every woman's", "all the patients at Cleveland", "each diabetic"
    r"\b(?:all|every|each)(?: the| of the)? (?:[a-z]+ )?(?:patients?|people|persons?|women|"
    r"woman|men|man|males?|females?|diabetics?|rows?|cases?|individuals?|ones?)(?:'s?)?\b|"
    r"\b(?:the )?(?:whole|entire|full) (?:[a-z]+ ){0,2}?(?:cohort|dataset|data set|data|"
    r"population|group)\b|"
    r"\bacross the board\b|"
    # "cholesterol set to 220 for all", "for all of them"
    r"\bfor all\b(?! (?:the |of the |four |4 )?(?:sites?|data|runs?|models?|versions?)\b)"
)

# Comparators as people write them; the longer phrases first ("greater than or equal to"
# before "greater than", "not over" before "over").
_ABOVE = (
    r"(?:>=|>|=>|≥|(?:greater|more|higher) than or equal to|no (?:less|lower|fewer) than|"
    r"not (?:under|below)|at or above|over|above|more than|greater than|higher than|older than|"
    r"at least|exceeding|exceeds|exceeded|exceed|in excess of|upwards of|beyond)"
)
_BELOW = (
    r"(?:<=|<|=<|≤|(?:less|lower|fewer) than or equal to|no (?:more|greater|higher) than|"
    r"not (?:over|above)|at or below|up to|under|below|less than|lower than|younger than|"
    r"at most|fewer than)"
)
_OPS = {
    "≥": ">=",
    "≤": "<=",
    "greater than or equal to": ">=",
    "more than or equal to": ">=",
    "higher than or equal to": ">=",
    "no less than": ">=",
    "no lower than": ">=",
    "no fewer than": ">=",
    "not under": ">=",
    "not below": ">=",
    "at or above": ">=",
    "exceeds": ">",
    "exceeded": ">",
    "exceed": ">",
    "in excess of": ">",
    "upwards of": ">",
    "beyond": ">",
    "less than or equal to": "<=",
    "lower than or equal to": "<=",
    "fewer than or equal to": "<=",
    "no more than": "<=",
    "no greater than": "<=",
    "no higher than": "<=",
    "not over": "<=",
    "not above": "<=",
    "at or below": "<=",
    "up to": "<=",
    "fewer than": "<",
    ">": ">",
    "over": ">",
    "above": ">",
    "more than": ">",
    "greater than": ">",
    "higher than": ">",
    "older than": ">",
    "exceeding": ">",
    ">=": ">=",
    "=>": ">=",
    "at least": ">=",
    "<": "<",
    "under": "<",
    "below": "<",
    "less than": "<",
    "lower than": "<",
    "younger than": "<",
    "<=": "<=",
    "=<": "<=",
    "at most": "<=",
}
_COMPARISON = re.compile(rf"({_ABOVE}|{_BELOW})[ -]?{NUMBER}")
# A comparator after the number: "60 or older", "chol 240 and above", "aged 65+".
_POST_ABOVE = (
    r"(?:or (?:more|over|above|older|higher|greater|upwards?)|and (?:over|above|up|older|higher|"
    r"upwards?)|\+)"
)
_POST_BELOW = r"(?:or (?:less|under|below|younger|lower|fewer)|and (?:under|below|younger|lower))"
_UNIT = r"(?: ?(?:years?(?: old| of age)?|yrs|yo|y/o|mg/dl|mmhg|bpm|mm|vessels?))?"
_POSTFIX = re.compile(rf"(?<![a-z0-9.]){NUMBER}{_UNIT} ?({_POST_ABOVE}|{_POST_BELOW})(?![a-z])")
# An age group named by its bound or decade: "the over-60s", "under 50s", "in their sixties".
_DECADES = {"twenties": 20, "thirties": 30, "forties": 40, "fifties": 50, "sixties": 60}
_DECADES |= {"seventies": 70, "eighties": 80}
_AGE_GROUP = re.compile(
    r"\b(over|under)[- ]?(\d{2})s\b|"
    r"\b(?:in (?:their|his|her|the) |aged in (?:their |the )?)(\d0)'?s\b|"
    r"\b(?:in (?:their|his|her|the) )(" + "|".join(_DECADES) + r")\b|"
    r"\b(\d0)-somethings?\b"
)


def _postfix_op(word: str) -> str:
    return ">=" if rx.fullmatch(_POST_ABOVE, word) else "<="


def _age_group(text: str) -> list[dict[str, Any]]:
    """ "the over-60s" (age > 60), "in their fifties" (50 <= age < 60)."""
    found = _AGE_GROUP.search(text)
    if found is None:
        return []
    if found.group(1):
        op = ">" if found.group(1) == "over" else "<"
        return [{"feature": "age", "op": op, "value": float(found.group(2))}]
    decade = next(g for g in found.groups()[2:] if g)
    low = float(_DECADES.get(decade, decade))
    return [
        {"feature": "age", "op": ">=", "value": low},
        {"feature": "age", "op": "<", "value": low + 10},
    ]


_RANGE = rf"(?:between {NUMBER} and {NUMBER}|(?:from )?{NUMBER} ?(?:to|-) ?{NUMBER})"
_BETWEEN = re.compile(_RANGE)

# A counterfactual is asked for by a question about what to change ("what would it take",
# "smallest change", "which changes would") together with where to get ("below the
# threshold", "low risk", "no longer flagged", "out of the positive class"), or by name.
_CF_ASK = (
    r"\bwhat would (?:it )?take\b|\bwhat (?:could|can|should|would|must|needs? to|has to|have "
    r"to) (?:[a-z']+ ){0,3}?(?:change|improve|modify|adjust|alter|fix|work on)\b|"
    r"\bwhat (?:would|could|might|will) (?:make|get|turn|bring|push|move|stop)\b|"
    r"\bhow (?:do|can|could|would|might|should) (?:we|i|you|he|she|"
    r"they|the patient|this patient|it) (?:get|bring|move|push|make|turn)\b|"
    # "how could we flip the model's decision": the verb is the goal's, so only looked at
    r"\bhow (?:do|can|could|would|might|should) (?:we|i|you) (?=(?:flip|reverse|change)\b)|"
    r"\b(?:smallest|smaller|slimmest|leanest|minimal|minimum|least|fewest|cheapest|easiest|"
    r"simplest|shortest|quickest|lightest|realistic|actionable) (?:[a-z]+ )?(?:(?:set|number|"
    r"package|combination|list) of )?(?:changes?|tweaks?|adjustments?|modifications?|"
    r"interventions?)\b|\b(?:which|what) (?:[a-z]+ )?(?:changes?|tweaks?|adjustments?)\b|"
    r"\bhow (?:much|far) would (?:[a-z']+ ){1,3}(?:need|have) to\b|"
    r"\bhow (?:do|can|could|would|might|should) (?:we|i|you|he|she|they|the patient|this patient) "
    r"(?:reduce|lower|decrease|cut|drop|change)\b|"
    r"\bwhat (?:would|needs? to|has to|must|should)(?: need to| have to)? (?:be )?(?:different|"
    r"changed?)\b|"
    # the nearest patient on the other side ("the closest low-risk version of him"), how far
    # away it is, and the card's word for what a counterfactual may change ("actionable")
    r"\b(?:closest|nearest)\b|\bhow far (?:is|are|off|away)\b|\b(?:actionable|modifiable)\b|"
    r"\b(?:which|what) (?:of )?(?:his |her |their |the |its )?(?:values?|inputs?|features?|"
    r"things?|measurements?|numbers?)(?: [a-z']+){0,3} (?:change|changed|modify|modified|adjust|"
    r"adjusted|improve|improved|move|moved)\b"
)
_CF_GOAL = (
    r"\b(?:under|below|beneath|less than|lower than|beyond) (?:the |our |your |its |his |her )?"
    r"(?:decision |classification |risk )?(?:threshold|cut-?off|cut off|line|boundary|bar)\b|"
    r"\b(?:low|lower|less) risk\b|\blow-risk\b|\bno longer (?:be )?(?:flagged|positive|"
    r"predicted|classified|high|at risk|at high risk|a positive)|\bnot (?:be )?flagged\b|"
    # the model's flag taken off ("so the model no longer flags him", "stops flagging her")
    r"\b(?:no longer|not|never) flags?\b|\bstop(?:s|ped)?(?: (?:it|the model|them))? flagging\b|"
    r"\bnot (?:be )?(?:at )?high[- ]risk\b|"
    r"\bflip(?:s|ped)? (?:him|her|them|the patient|this patient)\b(?! (?:to|into) high)|"
    r"\bout of (?:the )?(?:positive|high[- ]risk|at[- ]risk|disease|danger) (?:class|group|"
    r"category|zone|bucket|range|bracket|band|tier|territory|column)\b|"
    r"\b(?:flip|change|turn|reverse)s? (?:the |his |her |their |its )?(?:model's )?"
    r"(?:prediction|label|classification|class|outcome|decision|call|verdict|result)\b|"
    # the model's call, the other way: "to get a different prediction", "the opposite label"
    r"\b(?:different|other|opposite) (?:prediction|label|classification|class|outcome|"
    r"decision|verdict|result)\b|"
    r"\bnegative (?:prediction|"
    r"class|label)\b|\b(?:lower|reduce|decrease|cut|drop)s? (?:his|her|their|the patient's|its) "
    r"risk\b|\b(?:get|bring|push|take)s? (?:his|her|their|the|its) (?:patient's )?risk "
    r"(?:down|lower)\b|"
    r"\b(?:under|below|beneath|less than) (?:0?\.\d{1,3}|\d{1,2}(?:\.\d)? ?(?:%|percent))|"
    # the model's call on the patient, turned ("for the model to call him negative", "flips
    # him to low risk", "gets her classed as healthy")
    r"\b(?:predict|predicts|predicted|classify|classifies|classified|class|classed|label|"
    r"labels|labell?ed|call|calls|called|score|scores|scored|consider|considers|considered|"
    r"say|says|see|sees|deem|deems|deemed|judge|judges|judged|"
    r"rate|rates|rated|flip|flips|flipped|move|moves|moved|put|puts|turn|turns|"
    # "to make this patient negative", "get him to low"
    r"make|makes|made|making|get|gets|got|getting)"
    r"(?: (?:him|her|them|it|the patient|this patient|that patient))? (?:as |to |into )?"
    r"(?:healthy|negative|low|no (?:[a-z]+ )?disease|disease-free|not at risk)\b"
)
_COUNTERFACTUAL = re.compile(
    rf"\bcounterfactual|(?:{_CF_ASK}).*(?:{_CF_GOAL})|(?:{_CF_GOAL}).*(?:{_CF_ASK})|"
    # the question alone, of the patient just scored ("so what would it take for her?")
    r"^\W*(?:(?:ok(?:ay)?|so|and|then|right)\W+)?(?:so )?what would it take(?: for (?:him|her|them|"
    r"this patient|the patient))?\W*$|"
    r"\b(?:bring|get|push|take|drop|lower|reduce)s? (?:his|her|their|the|this|that|its) "
    r"(?:patient's )?risk (?:down )?(?:under|below|beneath)\b|"
    r"\b(?:smallest|minimal|least|minimum) change\b|"
    # "what can be done about it?", "what could he do to lower it?" (after a prediction)
    r"\bwhat (?:can|could|might) (?:be done|(?:we|i|he|she|they) do)\b"
    r"(?: (?:about (?:it|that|this|his risk|her risk|the risk)|to (?:lower|reduce|bring|get|"
    r"improve|help)\b)|\W*$)|"
    # "the least he'd have to change to drop below the cut-off"
    r"\b(?:least|smallest|minimal|minimum|fewest)\b[a-z' ]{0,30}\bchange|"
    r"\b(?:drop|get|fall|go|come|bring [a-z]{2,4})(?: [a-z']{1,12}){0,2} (?:below|under|beneath)"
    r" (?:the )?(?:cut-?off|threshold|line|decision threshold)\b"
)
# The words people use for one row of a dataset ("row 12", "data point id 33", "sample
# number 7", "point #12", "instance 250", "patient with id 88", "ids 5 and 6").
_ROW_NOUN = (
    r"(?:rows?|records?|entries|entry|cases?|instances?|samples?|examples?|observations?|"
    # "point" alone only before an id's mark ("point #12"): "concave points 8" is a value
    r"data points?|points?(?= ?#| (?:number|no\.?|id) )|subjects?|ids?|row ids?|record ids?|"
    r"patients?|patient ids?)"
)
_ROWS = re.compile(
    rf"\b{_ROW_NOUN}"
    r"(?: (?:number|no\.?|id|ids|numbers)| (?:with|of) (?:the )?(?:id|ids|number|no\.?))?"
    rf" #?(\d{{1,4}}(?:(?:, ?|,? and | & |, and )(?:{_ROW_NOUN} )?"
    r"#?\d{1,4}){0,19})\b"
    # "patients 40 to 60", "patients 65 and over", "patient 63 yo": ages, not ids
    r"(?! ?(?:to(?! (?:be|get|go|drop|fall|come|turn|move|cross|end up|have|has)\b)|-|\+|"
    r"or (?:older|over|more|above|younger|under|less)|and (?:over|above|older|up|"
    r"under|below|younger)|years?|yrs|yo|y/o|year-old|s\b))"
)
_SHOW = re.compile(
    r"\b(?:show|see|display|get|list|give|what|which|row|pull|open|fetch|look|bring|"
    r"retrieve|view|read|dump|tell|about)\b|"
    # the model's view of a row is in what show_rows gives: "how likely is point #12 to have
    # heart disease", "chances for ids 5 and 6", "is patient with id 88 classified as ..."
    r"\b(?:likel[a-z]*|probabilit[a-z]*|chances?|odds|risk|predict[a-z]*|classif[a-z]*|"
    r"label(?:l?ed)?|outcome)\b"
)
_WRONGLY = (
    r"\b(?:wrongly|incorrectly|falsely|mistakenly|erroneously) (?:flagged|predicted|classified|"
    r"labell?ed|called|cleared|marked|scored|judged|put)\b"
)
_MISTAKES = re.compile(
    # "error rate" and "misclassification rate" are performance: _ACCURACY's
    rf"{_WRONGLY}|\bmistakes?\b|\berrors?\b(?! rates?\b)|\bwrong\b|"
    r"\bmisclassif[a-z]*\b(?! rates?\b)|"
    r"\bfalse (?:negative|positive)s?\b|"
    r"\bmiss(?:es|ed)?\b|\bfalse alarms?\b|\bget(?:s)? wrong\b"
)
_INTERACTIONS = re.compile(
    r"\binteract(?:s|ion|ions|ing)?\b|\bwork(?:s|ing)? together\b|\bpairs? of features\b|"
    r"\bfeature pairs?\b|\bcombinations? of features\b|\bjointly\b|\bin combination\b"
)
_IMPORTANCE = re.compile(
    r"\b(?:most |more |least )?important features?\b|\bfeature importances?\b|"
    r"\b(?:most|least|more) (?:important|influential|predictive|relevant|informative) "
    r"(?:features?|inputs?|variables?)\b|"
    r"\b(?:which|what) (?:features?|inputs?|variables?) (?:[a-z]+ )?"
    r"(?:matters?|counts?|carry|carries|weighs?|drives?|contributes?|influences?|has|have) "
    r"(?:the )?(?:most|biggest|largest|greatest|strongest|highest)\b|"
    r"\b(?:feature|variable|predictor|input) (?:ranking|rankings|weights?)\b|"
    r"\brank(?:ing)? (?:of )?(?:the )?(?:features|inputs|variables|predictors)\b|"
    r"\bimportance of (?:the )?features\b|"
    # said of a group with no superlative: "what features matter for the diabetics?"
    r"\b(?:which|what) (?:features?|inputs?|variables?) (?:really )?(?:matter|count)s?\b|"
    r"\bwhich features? (?:matters?|counts?) (?:the )?most\b|"
    r"\btop \d{1,2} features\b|\btop features\b|\bglobal importance\b|"
    r"\bwhat does the model (?:rely|depend|lean) on\b|\bmost influential features?\b|"
    # the features named first, the superlative after: "which features are most important",
    # "which features does the model rely on most"
    r"\b(?:which|what) (?:features?|inputs?|variables?|predictors?) (?:are|is|were) (?:the )?"
    r"(?:most|more) (?:important|influential|predictive|relevant)\b|"
    r"\b(?:which|what) (?:features?|inputs?|variables?|predictors?) (?:does|do) (?:the model|it|"
    r"you) (?:rely|depend|lean) (?:on )?(?:the )?most\b|"
    r"\bwhat (?:matters|counts|weighs) (?:the )?most\b|\bpay[a-z]* (?:the )?most attention\b|"
    r"\bwhat does (?:the model|it) (?:care|focus) "
    r"(?:about|on) most\b|\b(?:look|looks) at most\b"
)
# Words for what drives risk that, said of a group or of the model overall ("top 3 drivers
# across the Cleveland cohort", "main risk factors overall"), ask for importance; said of one
# patient they ask for an explanation.
_DRIVERS = re.compile(
    r"\bdrivers?\b|\bpredictors?\b|\brisk factors?\b|\bfactors?\b|\bwhat drives\b|"
    # the explainer's own words ("global SHAP importance over the Swiss cohort", "feature
    # attributions for that prediction")
    r"\bshap\b|\battributions?\b|"
    r"\bdrives? (?:the )?(?:risk|predictions?|model)\b"
)
_OVERALL = re.compile(
    r"\boverall\b|\bin general\b|\bglobal(?:ly)?\b|\bacross\b|\bpopulation\b|"
    r"\b(?:whole|entire) (?:dataset|data|cohort)\b|\bon average\b|\bgenerally\b|"
    r"\bfor the model\b|\bthe model's\b|\bin the model\b"
)
_ACCURACY = re.compile(
    r"\baccura(?:te|cy)\b|\bauc\b|\broc\b|\bsensitiv[a-z]*|\bspecificity\b|\bperform[a-z]*|"
    r"\bhow (?:well|good)\b|\bcalibrat[a-z]*|\bheld[- ]out\b|\bconfidence interval|"
    r"\brecall\b|\bprecision\b|\bppv\b|\bnpv\b|\bf1\b|\bbrier\b|\bdiscriminat[a-z]*|"
    r"\bbias(?:ed)?\b|\bfair(?:ness|ly)?\b|\bunderperform[a-z]*|\breliab[a-z]*|"
    r"\bany good\b|\btrustworth[a-z]*|\bhow right\b|\bget(?:s)? right\b|"
    r"\b(?:error|misclassification) rates?\b|"
    # "does it work as well for Swiss patients", "how does it do on women", "hold up"
    r"\bworks? (?:as |equally |just as )?well\b|\bhow (?:does|did) (?:it|the model) (?:do|fare)\b|"
    r"\b(?:fares?|holds? up|does it do)\b"
)
_DATA_QUESTION = re.compile(
    r"\bhow many\b|\baverage\b|\bmean\b|\bmedian\b|\bstatistics\b|\bstats\b|\bdescribe\b|"
    r"\bsummar[a-z]*|\bproportion\b|\bpercentage\b|\bshare\b|\bbalance\b|\bdistribution\b|"
    r"\brange\b|\bmissing\b|\brisk\b|\bcount\b|\bshow\b|\blist\b"
)
# A statistic of named features, with no group needed ("how much cholesterol data is
# missing", "distribution of chest pain types in Hungary", "average max heart rate").
_STATISTIC = re.compile(
    r"\baverage\b|\bmean\b|\bmedian\b|\bstatistics\b|\bstats\b|\bdistribution\b|"
    r"\bbreakdown\b|\bbroken down\b|\brange\b|\bmissing\b|\bmissingness\b|\bspread\b|"
    r"\bstandard deviation\b|\bstd\b|\bminimum\b|\bmaximum\b|\bhistogram\b|"
    r"\bhow (?:is|are) [a-z ]{1,30} distributed\b|\bcounts? (?:of|per|by)\b|\bsummar[a-z]*"
)
# Words of a change over time or against training: "distribution" then is drift's.
_MOVED = re.compile(
    r"\bdrift|\bshift|\bchang|\bmov(?:e|ed|ing)\b|\bdiffer|\bcompar|\bversus\b|\bvs\b|"
    r"\btrain|\bincoming\b|\brecent|\blately\b|\bnew\b|\bsince\b|\bpredictions\b|"
    # what the model accepts is model_info's: "what range of cholesterol does it accept"
    r"\baccept|\ballow|\bvalid\b|\bpermit|\b(?:does|can|will) (?:it|the model)\b"
)
_HYPOTHETICAL = re.compile(
    r"\bwhat if\b|\bwhat happens\b|\bwhat would happen\b|\bsuppose\b|\bsupposing\b|"
    r"\b(?:simulate|simulated|simulating|simulation|rerun|re-run|rescore|re-score|apply)\b|"
    r"\bimagine\b|\bhypothetical(?:ly)?\b|\bif (?:we|they|their|all|every|each)\b|"
    r"\bwhat-if\b|"
    # a change done to the group, said as a gerund ("the effect of raising max HR by 15 for
    # those over 60", "simulate lowering cholesterol")
    r"\b(?:raising|lowering|reducing|increasing|decreasing|cutting|dropping|boosting|"
    r"setting|changing|bringing)\b"
)
_FLIP = re.compile(
    r"\b(?:how many|which|what share of|what fraction of) (?:[a-z]+ )?(?:predictions?|labels?|"
    r"patients?|people|rows?|cases?) (?:would |will |might )?(?:flip|change|switch|cross)"
)
_DATA_OVERALL = re.compile(
    # the data's size: "how many rows does the dataset have", "how big is the data"
    r"\bhow many (?:rows|records|entries|samples|patients|people)(?: (?:are|is|do we have))? "
    r"(?:there|in (?:the|this|your|our) (?:data|dataset|data set|cohort)|(?:does|do) (?:the|this|"
    r"your|our|we) (?:data|dataset|data set)? ?(?:have|hold|contain))\b|"
    r"\bhow (?:big|large) is (?:the|this|your|our) (?:data|dataset|data set)\b|"
    # where the data comes from: "what share of the dataset comes from Hungary", "how many of
    # the records are from each site", "what fraction of the data is from Cleveland"
    r"\b(?:share|fraction|proportion|percentage|part|portion|how much|how many|what %) of (?:the "
    r"|our |this |your )?(?:data|dataset|data set|rows|records|patients|cases|samples|entries)"
    r" (?:is |are |was |were |comes? |came |originates? )?(?:from|at|in)\b|"
    r"\b(?:rows|records|patients|cases|samples|entries) (?:are |come )?(?:from|per|by|at) "
    r"(?:each|every|which) (?:site|hospital|centre|center)\b|"
    r"\bsize of (?:the|this|your|our) (?:data|dataset|data set)\b|"
    r"\b(?:label|class|outcome) balance\b|"
    # how common the outcome is: "the disease rate in Switzerland", "prevalence among men"
    r"\b(?:disease|outcome|positive|positivity|event|base|incidence) rates?\b|\bprevalence\b|"
    r"\bhow common is (?:heart )?disease\b|\bdescribe the (?:data|dataset)\b|\b(?:data|dataset) "
    r"(?:statistics|stats|summary)\b|\bsummar[a-z]* (?:of )?the (?:data|dataset)\b|"
    r"\bhow many (?:patients|rows) (?:have|had|with) (?:heart disease|the outcome|disease)\b"
)
_SITE_STATUS = re.compile(
    r"\b(?:mov[a-z]*|drift[a-z]*|shift[a-z]*|odd|weird|doing|chang[a-z]*|different|ok|okay|"
    r"healthy|status|going on|trained on|anything|lately|recent[a-z]*|incoming|new)\b"
)
_CHANGE = re.compile(
    rf"{NUMBER} ?(?:[a-z/]{{1,6}} )?(lower|less|higher|more|down|up|fewer)\b|"
    rf"\b(lower|reduce|cut|drop|decrease|raise|increase)(?:d|s)? (?:by )?{NUMBER}"
)


def _names(feature: Feature) -> list[str]:
    words = {feature.name.lower(), feature.display_name.lower(), *feature.synonyms}
    return sorted((w for w in words if len(w) > 1), key=len, reverse=True)


def _named(feature: Feature, text: str) -> re.Match[str] | None:
    pattern = "|".join(re.escape(w) for w in _names(feature))
    return rx.search(rf"(?<![a-z])(?:{pattern})(?![a-z])", text)


def _mentions(feature: Feature, text: str) -> list[re.Match[str]]:
    """Where a feature is named (the first three times)."""
    pattern = "|".join(re.escape(w) for w in _names(feature))
    found = rx.finditer(rf"(?<![a-z])(?:{pattern})(?![a-z])", text)
    return list(itertools.islice(found, 3))


def _bounds(match: re.Match[str], first: int) -> tuple[float, float]:
    """The two ends of a range matched by _RANGE, whose groups start at `first`."""
    pairs = [(match.group(i), match.group(i + 1)) for i in (first, first + 2)]
    low, high = next(pair for pair in pairs if pair[0] is not None)
    return number(low), number(high)


def _count_before(
    feature: Feature, names: str, text: str
) -> tuple[tuple[int, int], Conditions] | None:
    """A comparison said before a counted feature's name: "2 or more vessels", "fewer than
    2 major vessels", "no vessels coloured" (== 0): only for features counted in whole
    numbers (the card's `integer`), whose number comes first in speech."""
    if not feature.integer:
        return None
    said = rx.search(
        rf"(?<![a-z0-9.])(?:({_ABOVE}|{_BELOW}) ?{NUMBER}|{NUMBER} ?({_POST_ABOVE}|{_POST_BELOW})?)"
        rf" (?:[a-z-]+ )?(?:{names})(?![a-z])",
        text,
    )
    if said is None:
        return None
    if said.group(1):
        op, value = _OPS[said.group(1)], said.group(2)
    else:
        op = _postfix_op(said.group(4)) if said.group(4) else "=="
        value = said.group(3)
    return said.span(), [{"feature": feature.name, "op": op, "value": number(value)}]


def _compared(feature: Feature, names: str, text: str) -> tuple[tuple[int, int], Conditions] | None:
    """A comparison said after a numeric feature's name ("chol >= 240", "oldpeak of 2 or
    more", "resting bp between 120 and 140"): where it is said and its conditions."""
    near = re.compile(
        rf"(?<![a-z])(?:{names})(?![a-z])(?: (?:is|was|are|were|of|level|levels|values?|"
        rf"reading|readings|(?:that|which) (?:is|was|are))){{0,2}} ?"
        rf"(?:({_ABOVE}|{_BELOW}) ?{NUMBER}|{_RANGE}|{NUMBER}{_UNIT} ?({_POST_ABOVE}|"
        rf"{_POST_BELOW})(?![a-z]))"
    )
    found = near.search(text)
    if found is None:
        return None
    if found.group(8):  # "chol 240 or higher"
        op, value = _postfix_op(found.group(8)), number(found.group(7))
        return found.span(), [{"feature": feature.name, "op": op, "value": value}]
    if found.group(1):
        op, value = _OPS[found.group(1)], number(found.group(2))
        return found.span(), [{"feature": feature.name, "op": op, "value": value}]
    low, high = _bounds(found, 3)
    return found.span(), [
        {"feature": feature.name, "op": ">=", "value": low},
        {"feature": feature.name, "op": "<=", "value": high},
    ]


def _numeric_conditions(text: str, card: DatasetCard) -> tuple[Conditions, list[str]]:
    """Comparisons on numeric features: (conditions, features named without a comparison)."""
    conditions: Conditions = []
    named_only: list[str] = []
    claimed: list[tuple[int, int]] = []
    for feature in card.features:
        if feature.kind != "numeric":
            continue
        names = "|".join(re.escape(w) for w in _names(feature))
        found = _compared(feature, names, text) or (
            _count_before(feature, names, text) if feature.name != "age" else None
        )
        if found:
            claimed.append(found[0])
            conditions += found[1]
        elif feature.name != "age" and _named(feature, text):
            named_only.append(feature.name)
    if "age" in card.feature_names and not any(c["feature"] == "age" for c in conditions):
        conditions += _age_conditions(text, card, claimed)
    return conditions, named_only


def _age_conditions(text: str, card: DatasetCard, claimed: list[tuple[int, int]]) -> Conditions:
    """Age when a group is bounded by a number no other feature claims: "the over-60s",
    "60 or older", "women over 60", "aged 40 to 50"."""
    grouped = _age_group(text)
    if grouped:
        return grouped

    def free(match: re.Match[str]) -> bool:
        """Not part of another feature's comparison, nor said right after a feature's name
        ("fasting sugar under 120" is no age)."""
        before = text[max(0, match.start() - 40) : match.start()]
        return not any(s <= match.start() < e for s, e in claimed) and not _after_a_feature(
            before, card
        )

    for post in _POSTFIX.finditer(text):  # "60 or older", "aged 65+"
        value = number(post.group(1))
        units = rx.search(r"(?:mg|mmhg|bpm|mm|vessels?)", post.group(0))
        if free(post) and 1 <= value <= 120 and not units:
            return [{"feature": "age", "op": _postfix_op(post.group(2)), "value": value}]
    for match in _COMPARISON.finditer(text):  # "women over 60": age, when nothing else
        value = number(match.group(2))
        units = rx.match(r" ?(?:mg|mmhg|bpm|mm\b|%)", text[match.end() :])
        if free(match) and 1 <= value <= 120 and not units:
            return [{"feature": "age", "op": _OPS[match.group(1)], "value": value}]
    between = _BETWEEN.search(text)
    aged = rx.search(r"\b(?:aged|age|ages|years?)\b", text)
    if between and aged and free(between):
        low, high = _bounds(between, 1)
        return [
            {"feature": "age", "op": ">=", "value": low},
            {"feature": "age", "op": "<=", "value": high},
        ]
    return []


def _after_a_feature(before: str, card: DatasetCard) -> bool:
    """Whether text ends with the name of a feature other than age (and a word or two)."""
    if card.name not in _FEATURE_ENDS:
        words = sorted(
            {w for f in card.features if f.name != "age" for w in _names(f)}, key=len, reverse=True
        )
        pattern = "|".join(re.escape(w) for w in words)
        _FEATURE_ENDS[card.name] = re.compile(
            rf"(?<![a-z])(?:{pattern})(?: (?:is|was|are|were|of|level|levels|reading))? ?$"
        )
    return _FEATURE_ENDS[card.name].search(before) is not None


_FEATURE_ENDS: dict[str, re.Pattern[str]] = {}


def conditions_in(text: str, card: DatasetCard) -> tuple[list[dict[str, Any]], list[str]]:
    """The cohort a question names, and the features it names without a condition."""
    conditions, named_only = _numeric_conditions(text, card)
    names = set(card.feature_names)
    if "sex" in names:
        female, male = _FEMALE.search(text), _MALE.search(text)
        if female and not male:
            conditions.insert(0, {"feature": "sex", "op": "==", "value": "Female"})
        elif male and not female:
            conditions.insert(0, {"feature": "sex", "op": "==", "value": "Male"})
    values = parse_patient(text, card, pronouns=False)
    for feature in card.features:  # plural value words name a group: "diabetics"
        for word, value in feature.value_words.items():
            if feature.name not in values and rx.search(rf"(?<![a-z]){re.escape(word)}s\b", text):
                values[feature.name] = value
    for feature in card.features:
        if feature.kind == "numeric" or feature.name == "sex":
            continue
        condition = _category_condition(feature, values.get(feature.name), text, card)
        if condition is not None:
            conditions.append(condition)
    if card.site_column:
        conditions += _site_conditions(text, card)
    return conditions, named_only


# Between two values listed as alternatives: a comma, slash, "or", "and" or "nor", and at
# most two other words ("non-anginal pain or asymptomatic"), none of a change ("to", "for").
_LIST_GAP = re.compile(
    r"(?: ?(?!to\b|for\b|from\b|into\b|instead\b|rather\b|than\b|vs\b|versus\b)[a-z-]{1,15}){0,2}"
    r" ?(?:,|/|or|and|and/or|nor|, or|, and)(?: either| both)? ?"
)


def _category_condition(
    feature: Feature, value: Any, text: str, card: DatasetCard
) -> dict[str, Any] | None:
    """The condition on a feature the group names: == the value read; for a feature of more
    than two categories, `in` the values listed together ("typical or atypical angina": a
    patient has one of them, so two named mean either; not "from asymptomatic to typical
    angina", a change) and != a value said negated ("chest pain not asymptomatic", "thal
    isn't normal"; several negated: `in` the rest)."""
    categories = list(feature.categories or ())
    if feature.kind == "categorical" and len(categories) > 2:
        mentions = category_mentions(feature, text, card)
        said = list(dict.fromkeys(v for _, v, negated in mentions if not negated))
        unsaid = list(dict.fromkeys(v for _, v, negated in mentions if negated))
        listed = all(
            _LIST_GAP.fullmatch(text[one[0][1] : other[0][0]])
            for one, other in itertools.pairwise(mentions)
        )
        if len(said) >= 2 and not unsaid and listed:
            return {"feature": feature.name, "op": "in", "value": said}
        if unsaid and not said:
            if len(unsaid) == 1:
                return {"feature": feature.name, "op": "!=", "value": unsaid[0]}
            rest = [c for c in categories if c not in unsaid]
            return {"feature": feature.name, "op": "in", "value": rest}
    if value is None:
        return None
    return {"feature": feature.name, "op": "==", "value": value}


# A site left out: "not at Cleveland", "outside Hungary", "excluding the Swiss", "non-VA".
_EXCLUDED = re.compile(
    r"(?:\bnot (?:at|in|from|including)|\boutside(?: of)?|\bexcept(?: for| at| in)?|\bexcluding|"
    r"\bexclude|\bother than|\bapart from|\bbesides|\bleaving out|\bleave out|\bbut not|"
    r"\bnon)(?: the)?(?: sites?| data)?[ -]$"
)


_LISTED = re.compile(r"(?:,|\band\b|\bor\b|\bnor\b) (?:the )?$")


def _site_conditions(text: str, card: DatasetCard) -> list[dict[str, Any]]:
    """The sites a cohort names (==, or in for several), or those it leaves out (!=, or in
    for the others): "cholesterol above 300 but not at Cleveland"."""
    mentions = site_mentions(text, card)
    found = [site for _, site in mentions]
    left_out: list[str] = []
    previous = -100
    for start, site in mentions:  # "outside Hungary and Cleveland": both left out
        listed = left_out and start - previous < 30 and _LISTED.search(text[:start])
        if listed or _EXCLUDED.search(text[max(0, start - 30) : start]):
            left_out.append(site)
            previous = start
    if not found:
        return []
    kept = [site for site in found if site not in left_out]
    if kept:
        found = kept
    elif len(left_out) == 1:
        return [{"feature": "site", "op": "!=", "value": left_out[0]}]
    else:
        found = [site for site in sites(card) if site not in left_out]
    if len(found) == 1:
        return [{"feature": "site", "op": "==", "value": found[0]}]
    return [{"feature": "site", "op": "in", "value": found}]


_DOWN = (
    r"(?:lower(?:ed|ing|s)?|less|fewer|down|reduc(?:e|ed|es|ing|tions?)|cut(?:s|ting)?|"
    r"drop(?:ped|ping|s)?|decreas(?:e|ed|es|ing)|fell|fall(?:s|en|ing)?|minus|off)"
)
_UP = (
    r"(?:higher|more|up|rais(?:e|ed|es|ing)|increas(?:e|ed|es|ing)|ros(?:e|en)|ris(?:e|es|ing)|"
    r"boost(?:s|ed|ing)?|plus|add(?:ed)?|extra)"
)
# "20 points lower", "10 mmhg higher"; a word between is a unit, never "and"/"or" ("by 10
# and dropped their bp": the 10 is not dropped).
_AMOUNT_AFTER = re.compile(
    rf"{NUMBER} ?(?:(?!(?:and|or|but|then|while)\b)[a-z/]{{1,6}} )?(?:points? )?({_DOWN}|{_UP})\b"
)
# "20 points lower cholesterol", "10 mmhg higher in blood pressure": just before the feature.
_AMOUNT_BEFORE = re.compile(
    rf"{NUMBER} ?(?:(?!(?:and|or|but|then|while)\b)[a-z/]{{1,6}} )?(?:points? )?({_DOWN}|{_UP})"
    r"(?: in| of| for)? ?"
    r"(?:the |their |everyone's |everybody's |all )?$"
)
_BY = re.compile(rf"\bby {NUMBER}")
_SIGNED = re.compile(rf"(?: (?:by|of))? ?([+-]) ?{NUMBER}")
# A signed amount said as a shift of the feature ("a -10 mmHg shift in trestbps", "+20 change
# to chol"): the sign is the direction.
_SIGNED_SHIFT = re.compile(
    r"([+-]) ?(\d{1,4}(?:\.\d{1,3})?) ?(?:[a-z/]{1,6} )?(?:shift|change|delta|adjustment|offset)"
    r" (?:in|of|to|on) (?:the |their |everyone's |all )?$"
)
_AMOUNT_AROUND = re.compile(rf"{NUMBER} ?(?:[a-z/]{{1,6}} )?$")
_NOUN_AFTER = re.compile(
    r"^(?: levels?| values?)? (reduction|decrease|drop|cut|fall|increase|rise|boost)\b"
)
_VERB_AMOUNT = re.compile(rf"\b({_DOWN}|{_UP}) (?:by )?{NUMBER}")
_DIRECTION = re.compile(rf"\b({_DOWN}|{_UP})\b")
_SET_TO = re.compile(
    rf"^(?:'s)?(?: (?:level|levels|values?|readings?))?(?: (?:were|was|is|are|be|became|got|all))"
    rf"{{0,2}}"
    rf"(?: (?:set|fixed|capped|brought|changed|reset|normali[sz]ed|reduced|lowered|raised|"
    rf"increased|decreased|dropped|cut|brought down|brought up|went down|went up|gone down|"
    rf"gone up|came down|fell|rose|down|up))?(?: (?:to|at|=|of))? ?{NUMBER}"
)


def _amount(before: str, after: str) -> tuple[float, str] | None:  # noqa: PLR0911
    """The amount a feature changes by and the word of its direction, from the words just
    before and after the feature's name; None when no amount is said (a new value may be)."""
    found = _AMOUNT_AFTER.search(after)  # "chol 20 lower"
    if found:
        return number(found.group(1)), found.group(2)
    verb = _VERB_AMOUNT.search(after)  # "cholesterol dropped 25 points", "bp went up by 10"
    if verb:
        return number(verb.group(2)), verb.group(1)
    around = _AMOUNT_AROUND.search(before)
    noun = _NOUN_AFTER.match(after)
    if around and noun:  # "a 10 mmhg bp reduction"
        return number(around.group(1)), noun.group(1)
    shift = _SIGNED_SHIFT.search(before[-40:])
    if shift:  # "a -10 mmhg shift in trestbps"
        return number(shift.group(2)), "minus" if shift.group(1) == "-" else "plus"
    signed = _SIGNED.match(after)
    if signed:  # "chol -20", "bp +10"
        return number(signed.group(2)), "minus" if signed.group(1) == "-" else "plus"
    # the verb nearest before the feature ("raised their max hr by 10 and dropped their bp by
    # 5", "lowered their bp by 10 and their chol by 25"), else the first after it
    leading = list(_DIRECTION.finditer(before))
    direction = leading[-1] if leading else _DIRECTION.search(after)
    by = _BY.search(after)
    if by and direction:
        return number(by.group(1)), direction.group(1)
    found = _AMOUNT_BEFORE.search(before[-40:])  # "20 points lower cholesterol"
    if found:
        return number(found.group(1)), found.group(2)
    by = _BY.search(before[-40:])
    if by and direction:
        return number(by.group(1)), direction.group(1)
    return None


def _change(text: str, card: DatasetCard) -> list[dict[str, Any]]:
    """ "cholesterol were 20 lower", "lower everyone's bp by 10", "if every woman's blood
    pressure went up by 10", "everyone's cholesterol set to 200": one change per feature
    named with an amount (add) or a new value (set), in the order said."""
    changes: list[tuple[int, dict[str, Any]]] = []
    for feature in card.features:
        if feature.kind != "numeric":
            continue
        mentions = _mentions(feature, text)
        if not mentions:
            continue
        # the mention the amount is said with: "men with BP over 140: drop BP by 15" changes
        # the second (the first is the group's bound)
        named, said = mentions[0], None
        for mention in mentions:
            after = text[mention.end() : mention.end() + 40]
            if len(mentions) > 1 and rx.match(rf" ?(?:{_ABOVE}|{_BELOW})", after):
                continue  # "BP over 140": a bound of the group
            said = _amount(text[max(0, mention.start() - 60) : mention.start()], after)
            if said is not None:
                named = mention
                break
        after = text[named.end() : named.end() + 40]
        if said is not None:
            amount, word = said
        else:
            set_to = _SET_TO.search(after)
            # "aged 65+", "chol 240 or more", "aged 50-60": a bound of the group, no new value
            bound = rf" ?(?:years?|%|{_POST_ABOVE}|{_POST_BELOW}|(?:-|to|and) ?\d)"
            if set_to and not rx.match(bound, after[set_to.end() :]):
                changes.append(
                    (
                        named.start(),
                        {"feature": feature.name, "op": "set", "value": number(set_to.group(1))},
                    )
                )
            continue
        down = rx.fullmatch(_DOWN, word) is not None
        changes.append(
            (
                named.start(),
                {"feature": feature.name, "op": "add", "value": -amount if down else amount},
            )
        )
    aged = _AGED.search(text)
    if aged and "age" in card.feature_names and not any(c["feature"] == "age" for _, c in changes):
        amount = number(aged.group(1))  # "were all 5 years older"
        changes.append(
            (
                aged.start(),
                {
                    "feature": "age",
                    "op": "add",
                    "value": amount if aged.group(2) == "older" else -amount,
                },
            )
        )
    return [change for _, change in sorted(changes, key=lambda c: c[0])][:5]


_AGED = re.compile(rf"{NUMBER} ?(?:years?|yrs?) (older|younger)\b")


def _without_feature_names(text: str, card: DatasetCard) -> str:
    """The text with the card's feature names blanked ("radius error" is no error)."""
    for feature in card.features:
        for word in _names(feature):
            text = rx.sub(rf"(?<![a-z]){re.escape(word)}(?![a-z])", " ", text)
    return text


def _where(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"where": conditions} if conditions else {}


# How many mistakes to list: "list 5 missed cases", "the 3 worst false negatives".
_SHOWN = re.compile(
    r"\b(\d{1,2}) (?:[a-z-]+ ){0,2}(?:mistakes?|errors?|misclassifi[a-z]*|false (?:negatives?|"
    r"positives?|alarms?)|miss(?:es|ed)?|cases|examples|rows|patients|ones)\b"
)


def _top(text: str) -> int | None:
    found = rx.search(r"\btop (\d{1,2})\b|\b(\d{1,2}) most\b", text)
    return int(found.group(1) or found.group(2)) if found else None


def _counterfactual(
    text: str, card: DatasetCard, prediction_id: str | None, row: int | None
) -> ToolCall | None:
    """counterfactual for a row, a patient described in the same request, the row the last
    answer was about ("show sample 52" -> "what would it take to change its prediction?"),
    or the last prediction."""
    if not _COUNTERFACTUAL.search(text) or _stated_change(text, card):
        return None
    rows = _ROWS.search(text)
    if rows:
        return "counterfactual", {"row_id": int(rx.findall(r"\d{1,4}", rows.group(1))[0])}
    patient = parse_patient(text, card, pronouns=False)
    if len(patient) >= 3:  # "58 yo woman, typical angina, chol 280: what would it take ..."
        return "counterfactual", {"patient": patient}
    if row is not None:
        return "counterfactual", {"row_id": row}
    return ("counterfactual", {"prediction_id": prediction_id}) if prediction_id else None


def row_ids_in(text: str) -> list[int]:
    """The dataset row ids a clause names ("row 21", "id 40", "samples 5 and 6"), in order."""
    rows = _ROWS.search(text)
    return [int(n) for n in rx.findall(r"\d{1,4}", rows.group(1))] if rows else []


# A condition that states the change ("if his cholesterol were 190, would he fall below
# the cut-off?", "were his BP 120, would he drop under the threshold?"): a what-if with
# that change, not a search for one.
_CONDITION = re.compile(
    r"\b(?:if|suppose|supposing|assuming|imagine|say|were|was|had) (?:he|she|they|his|her|"
    r"their|the patient|the patient's|we|you|i)\b[^,;?]{0,80}"
)


def asks_for_changes(text: str) -> bool:
    """Whether a clause asks for the changes that would bring a risk under the threshold
    (a counterfactual), whoever it is about."""
    return bool(_COUNTERFACTUAL.search(text))


def _stated_change(text: str, card: DatasetCard) -> bool:
    """Whether a condition of the request states a value or a change of one of the card's
    features."""
    for condition in itertools.islice(_CONDITION.finditer(text), 3):
        said = condition.group(0)
        changes = relative_changes(said, card, None)
        if parse_patient(said, card, pronouns=False) or changes.values or changes.problems:
            return True
    return False


def _cohort_what_if(text: str, card: DatasetCard, earlier: Conditions) -> ToolCall | None:
    everyone = _EVERYONE.search(text) or _FLIP.search(text)
    grouped = _GROUP.search(text) or _AGE_GROUP.search(text) or _again(text, earlier)
    if not (everyone or (grouped and _HYPOTHETICAL.search(text))):
        return None
    changes = _change(text, card)
    if changes:
        conditions, _ = conditions_in(_without_changes(text, card, changes), card)
        conditions = conditions or _the_group_again(text, earlier)
        return "cohort_what_if", {**_where(conditions), "changes": changes}
    found = _value_set(text, card)
    if found is None:
        return None
    changes, (start, end) = found
    conditions, _ = conditions_in(text[:start] + " " * (end - start) + text[end:], card)
    conditions = conditions or _the_group_again(text, earlier)
    return "cohort_what_if", {**_where(conditions), "changes": changes}


# A group referred back to, with no conditions of its own: "how accurate is the model on
# those?", "the most important features for them", "what if their blood pressure went down
# by 15?" after a question about a group.
# Also the group named as the last one asked about ("for the last group", "the previous
# cohort") or as the place the last answer was about ("which pairs interact there?").
_BACK_TO_THE_GROUP = re.compile(
    r"\b(?:those|them|these|their|(?:that|this|the same|the last|the previous|the latest) "
    r"(?:group|cohort|subset|subgroup|population|patients|people|ones|rows|instances|samples))\b|"
    r"(?<!\bis )(?<!\bare )(?<!\bwas )(?<!\bwere )(?<!\bany )\bthere\W*$"
)


def _again(text: str, earlier: Conditions) -> bool:
    """Whether the clause refers back to the group of the last cohort question."""
    return bool(earlier) and _BACK_TO_THE_GROUP.search(text) is not None


def _the_group_again(text: str, earlier: Conditions) -> Conditions:
    """The last cohort question's conditions when the clause refers back to its group and
    names none of its own; else none."""
    return list(earlier) if _again(text, earlier) else []


def about_one_patient(text: str, card: DatasetCard) -> bool:
    """Whether a clause is about one patient: "he", "a 60 year old man", a patient's numbers
    ("bp 145, chol 233"; "women with exercise angina" is a group)."""
    values = parse_patient(text, card, pronouns=False)
    numbers = [name for name in values if card.feature(name).kind == "numeric"]
    return bool(_ONE_PATIENT.search(text)) or len(numbers) >= 2


def about_a_group(text: str, card: DatasetCard) -> bool:
    """Whether a clause is about many patients ("women over 60", "everyone's", "patients
    with ...") and not about one."""
    if about_one_patient(text, card):
        return False
    return bool(_GROUP.search(text) or _EVERYONE.search(text) or _AGE_GROUP.search(text))


def changes_a_group(text: str, card: DatasetCard) -> bool:
    """Whether a clause changes values of a group ("set cholesterol to 200 for everyone over
    50: how do the predictions shift?"): a cohort what-if, not drift."""
    return _cohort_what_if(text, card, []) is not None


# Where a group is given a yes/no or categorical value: "if everyone had diabetes",
# "suppose nobody at Cleveland had high fasting blood sugar", "if all the men were diabetic".
_GIVEN = re.compile(
    r"\b(?:had|have|has|got|get|gets|were|was|became|become|turned|developed|switched to|"
    r"changed to|set to|no longer had|stopped having|didn't have|did not have|lost|without)\b"
)
# A yes/no finding the group has, said treated or normal under a condition ("all patients
# with FBS pos if sugar controlled", "everyone with high blood sugar got it under control"):
# that finding set false for the group.
_IF = re.compile(r"\bif\b")
_TREATED = re.compile(r"\b(?:controlled|under control|treated|normali[sz]ed|normal again)\b")
_PRONOUN = re.compile(r"\b(?:it|that|them|this)\b")
_NOBODY = re.compile(
    r"\b(?:nobody|no one|none of (?:them|the [a-z]+)|no longer|stopped|didn't|did not|lost|"
    r"without)\b"
)
_CLAUSE_END = re.compile(r"[,;:?!]| (?:how|what|would|and how|then)\b")
# A value given by naming the feature first: "set fbs to false", "change slope to upsloping".
_SET_VERB = re.compile(r"\b(?:set|sets|change|changes|switch|switches|turn|turns|reset)\b")
_TO = re.compile(r" (?:to|=|into|as) ")
# Where the value so given ends: the group follows ("... to upsloping for everyone at X").
_SET_END = re.compile(r"[,;:?!]| (?:how|what|would|and how|then|for|at|in|among|across)\b")


def _value_set(text: str, card: DatasetCard) -> tuple[list[dict[str, Any]], tuple[int, int]] | None:
    """The yes/no and categorical values a group is given, as set changes, and where they
    are said; a boolean said of nobody is set false."""
    givens = itertools.chain(
        itertools.islice(_GIVEN.finditer(text), 4),
        itertools.islice(_SET_VERB.finditer(text), 2),
        itertools.islice(_IF.finditer(text), 2),
    )
    for given in givens:
        ends = _SET_END if _SET_VERB.fullmatch(given.group(0)) else _CLAUSE_END
        end = ends.search(text, given.end())
        stop = end.start() if end else len(text)
        said_of = _pronoun_named(
            _TO.sub(" ", text[given.start() : stop], count=1), text[: given.start()], card
        )
        values = parse_patient(said_of, card, pronouns=False)
        said = {n: v for n, v in values.items() if card.feature(n).kind != "numeric"}
        if given.group(0) == "if":  # only a finding said treated: "if sugar controlled"
            treated = _TREATED.search(said_of) is not None
            said = {n: v for n, v in said.items() if treated and v is False}
        if not said:
            continue
        negated = _NOBODY.search(text[max(0, given.start() - 40) : given.end()]) is not None
        changes = []
        for name, value in said.items():
            if negated and card.feature(name).kind != "boolean":
                continue
            flipped = (not value) if negated and isinstance(value, bool) else value
            changes.append({"feature": name, "op": "set", "value": flipped})
        if changes:
            return changes[:5], (given.start(), stop)
    return None


def _pronoun_named(said: str, before: str, card: DatasetCard) -> str:
    """`said` with "it" standing for the one yes/no finding named before it ("everyone with
    high blood sugar got it under control": "got blood sugar under control")."""
    if not _PRONOUN.search(said):
        return said
    named = [f for f in card.features if f.kind == "boolean" and _named(f, before) is not None]
    if len(named) != 1:
        return said
    return _PRONOUN.sub(named[0].name, said, count=1)


def _without_changes(text: str, card: DatasetCard, changes: list[dict[str, Any]]) -> str:
    """The text with the changed features' amounts blanked, so that "cholesterol reduced by
    30" is no condition while "everyone with chol over 240" stays one."""
    for change in changes:
        named = _named(card.feature(change["feature"]), text)
        if named is None:
            continue
        tail = text[named.start() :]
        amount = rx.search(rf"(?:by |to |at |= ?)?{NUMBER}", tail)
        if amount and not rx.match(
            rf"[a-z' ]{{0,20}}(?:{_ABOVE}|{_BELOW})", tail[len(named.group(0)) :]
        ):
            # the name and the amount, not the words between ("the cholesterol of all women
            # by 20": the women stay)
            offset = named.start()
            spans = [named.span(), (offset + amount.start(), offset + amount.end())]
            for start, end in spans:
                text = text[:start] + " " * (end - start) + text[end:]
    return text


def _definition(card: DatasetCard) -> re.Pattern[str]:
    """ "what does oldpeak mean", "what is thal?", "tell me what ca means", "define chol":
    a question about a feature's meaning, with the card's words for its features."""
    key = card.name
    if key not in _DEFINITIONS:
        names = "|".join(
            re.escape(w)
            for w in sorted({w for f in card.features for w in _names(f)}, key=len, reverse=True)
        )
        noun = r"(?:the )?(?:feature |column |variable |field |term |abbreviation |code )?"
        after = r"(?: (?:feature|column|variable|field|term|abbreviation|code|input))?"
        quoted = rf"['\"]?({names})['\"]?{after}"
        _DEFINITIONS[key] = re.compile(
            rf"\bwhat (?:does|do) {noun}{quoted} (?:mean|stand for|measure|refer to|represent|"
            rf"indicate|encode)\b|"
            rf"\bwhat {noun}{quoted} (?:means|stands for|measures|refers to|represents|"
            rf"indicates|is short for)\b|"
            rf"\bwhat(?: is|'s| are) {noun}{quoted}(?: exactly| again| here)?(?: (?:in|of) "
            rf"(?:this|the) (?:data|dataset|card|model))?\W*$|"
            rf"\b(?:define|definition of|meaning of|explain|describe) {noun}{quoted}(?: (?:in|of) "
            rf"(?:this|the) (?:data|dataset|card|model))?\W*$|"
            rf"\b(?:define|definition of|meaning of) {noun}{quoted}|"
            rf"\b(?:units?|scale|coding|codes) (?:of|for) "
            rf"{noun}{quoted}|\bwhat (?:units?|scale) (?:is|are) {noun}{quoted}|"
            rf"\bhow (?:is|are) {noun}{quoted} (?:measured|coded|encoded|defined|recorded)\b|"
            # "explain what the ca feature is", "tell me what thal means"
            rf"\b(?:explain|tell me|say|describe|remind me)(?: again)? what {noun}{quoted} "
            rf"(?:is|are|means|measures|stands for)\b|\bwhat is meant by {noun}{quoted}|"
            # "what values can thal take" (the allowed values of the inputs are model_info's)
            rf"\b(?:what|which) (?:values?|categories|levels|options|codes) (?:can|does|do|may|"
            rf"could) {noun}{quoted} (?:take|have|be)\b|"
            rf"\bwhat (?:do|does) (?:the )?(?:values?|categories|codes|levels) (?:of|for|in) "
            rf"{noun}{quoted} mean\b"
        )
    return _DEFINITIONS[key]


_DEFINITIONS: dict[str, re.Pattern[str]] = {}


def _rows_or_definition(text: str, card: DatasetCard) -> ToolCall | None:
    rows = _ROWS.search(text)
    if rows and _SHOW.search(text):
        ids = [int(n) for n in rx.findall(r"\d{1,4}", rows.group(1))]
        through = rx.match(r" ?(?:through|thru|to|-|until) ?#?(\d{1,4})\b", text[rows.end() :])
        if through and len(ids) == 1 and 0 < int(through.group(1)) - ids[0] < 50:
            ids = list(range(ids[0], int(through.group(1)) + 1))  # "records 1 through 5"
        return "show_rows", {"row_ids": ids}
    defined = _definition(card).search(text)
    if defined:
        word = next(g for g in defined.groups() if g)
        for feature in card.features:
            if word in _names(feature):
                return "define_feature", {"feature": feature.name}
    return None


def _about_the_model(text: str, conditions: list[dict[str, Any]]) -> ToolCall | None:
    """Mistakes, interactions, importance, or performance on a named cohort."""
    where = _where(conditions)
    top = _top(text)
    listed = rx.search(
        r"\b(?:show|list|which|worst|most confident|examples?|rows|cases|give me|see)\b", text
    )
    if _MISTAKES.search(text) and (
        conditions or listed or rx.search(r"\b(?:model|it|we|predict)", text)
    ):
        kind = "both"
        wrongly = rx.search(_WRONGLY + r"(?: [a-z]+){0,3}", text)
        cleared = wrongly and rx.search(
            r"\b(?:cleared|healthy|negative|low|no disease)\b", wrongly[0]
        )
        if rx.search(r"\bfalse negatives?\b|\bmiss(?:es|ed)?\b", text) or cleared:
            kind = "false_negative"
        elif rx.search(r"\bfalse (?:positives?|alarms?)\b", text) or wrongly:
            kind = "false_positive"
        shown = _SHOWN.search(text)
        limit = {"limit": min(int(shown.group(1)), 50)} if shown else {}
        return "model_mistakes", {**where, "kind": kind, **limit}
    if _INTERACTIONS.search(text):
        return "feature_interactions", {**where, **({"top": top} if top else {})}
    if _IMPORTANCE.search(text) or (
        _DRIVERS.search(text) and (conditions or _OVERALL.search(text))
    ):
        return "feature_importance", {**where, **({"top": top} if top else {})}
    if _ACCURACY.search(text) and conditions:
        return "model_performance", where
    return None


def cohort_request(
    text: str,
    card: DatasetCard,
    prediction_id: str | None,
    earlier: Conditions | None = None,
    row: int | None = None,
) -> ToolCall | None:
    """The cohort tool a clause asks for, with its arguments; None when it is not one.
    `earlier`: the conditions of the last cohort question, the group "those" and "them"
    refer back to; `row`: the one dataset row the last answer was about."""
    earlier = earlier or []
    found = (
        _counterfactual(text, card, prediction_id, row)
        or _cohort_what_if(text, card, earlier)
        or _rows_or_definition(text, card)
    )
    if found or _ONE_PATIENT.search(text):
        return found
    conditions, named_only = conditions_in(text, card)
    conditions = conditions or _the_group_again(text, earlier)
    stated = [n for n in parse_patient(text, card) if card.feature(n).kind == "numeric"]
    if len([n for n in stated if not any(c["feature"] == n for c in conditions)]) >= 2:
        return None  # "bp 145, chol 233": one patient's values, not a group
    found = _about_the_model(_without_feature_names(text, card), conditions)
    if found:
        return found
    if _DATA_OVERALL.search(text):
        features = {"features": named_only} if named_only else {}
        return "describe_data", {**_where(conditions), **features}
    if asks_statistics(text, card):  # "distribution of chest pain types in Hungary"
        said = {c["feature"] for c in conditions}
        named = [f.name for f in card.features if f.name not in said and _named(f, text)]
        return "describe_data", {**_where(conditions), **({"features": named} if named else {})}
    return _described(text, card, conditions, named_only)


# An age group said without its ages ("the elderly", "older patients", "young people"): the
# card's age is a number, so which ages are meant is asked, never guessed.
_VAGUE_AGES = re.compile(
    r"\b(?:the (?:elderly|old|aged|young|very old|over-?aged)|elderly|seniors?|pensioners|"
    r"(?:older|younger|old|young|middle[- ]aged|aged|geriatric) (?:patients|people|persons|adults|"
    r"ones|cases|individuals|population|folks?|men|women|group|subjects))\b"
)
_AGE_SAID = re.compile(r"\d|\b(?:over|under|above|below|between)[- ](?:sixty|seventy|fifty|forty)")


def vague_age_group(text: str, card: DatasetCard) -> str | None:
    """The question to ask when a request about a group names it by an age word with no
    ages ("is the model less accurate for the elderly"), with readings to type back; None
    when ages are said, or the card has no age."""
    if "age" not in card.feature_names or _AGE_SAID.search(text) or _ONE_PATIENT.search(text):
        return None
    said = _VAGUE_AGES.search(text)
    if said is None:
        return None
    young = bool(rx.search(r"young", said.group(0)))
    bound = "under 45" if young else "over 65"
    if _ACCURACY.search(text):
        asked = f"how accurate is the model for patients {bound}"
    else:
        asked = f"describe the patients {bound}"
    return (
        f"Which ages do you mean by '{said.group(0)}'? Say them, e.g. '{bound}' or "
        f"'between 45 and 65'. For example: \"{asked}\"."
    )


def asks_statistics(text: str, card: DatasetCard) -> bool:
    """Whether a clause asks for a statistic of features the card names ("distribution of
    chest pain types in Hungary"), not how they moved (drift)."""
    if not _STATISTIC.search(text) or _MOVED.search(text) or _ONE_PATIENT.search(text):
        return False
    return any(_named(f, text) for f in card.features if f.name not in {"age", "sex"}) or bool(
        rx.search(r"\b(?:ages?|sex|gender)\b", text)
    )


def _described(
    text: str, card: DatasetCard, conditions: list[dict[str, Any]], named_only: list[str]
) -> ToolCall | None:
    """describe_data for a group of patients named by its conditions ("women over 60 at
    Hungary"); a site alone needs a question about its data ("how is Hungary doing" is not)."""
    # a statistic asked of a site's data is about a group too ("summary stats for the
    # Hungarian data", "how much data is missing at VA")
    grouped = bool(_GROUP.search(text)) or bool(_STATISTIC.search(text) and not _MOVED.search(text))
    compared = any(c["op"] != "==" for c in conditions)
    site_only = all(c["feature"] == "site" for c in conditions)
    if not conditions or not (grouped or compared):
        return None  # "typical angina" alone describes a patient, not a group
    if site_only and (_SITE_STATUS.search(text) or not (grouped or _DATA_QUESTION.search(text))):
        return None  # a site's status is check_drift's
    arguments = {**_where(conditions), **({"features": named_only} if named_only else {})}
    return "describe_data", arguments


# the words read here are never "fixed" into neighbours ("stats" is no typo of "status")
known_words(
    *(
        rx.sub(r"\\[a-z]", " ", pattern)  # "\\bstats" is the word "stats"
        for pattern in (
            _STATISTIC.pattern,
            _SHOW.pattern,
            _DRIVERS.pattern,
            _OVERALL.pattern,
            _IMPORTANCE.pattern,
            _CF_ASK,
            _CF_GOAL,
            _ROWS.pattern,
            _FLIP.pattern,
            _EVERYONE.pattern,
            _HYPOTHETICAL.pattern,
            "point points percent",
            # the cohort questions' words and their inflections
            "interaction interactions interacting interacts mistake mistakes misclassified "
            "misclassification misclassifications alarms alarm errors missed misses excluding "
            "except outside exceeds exceeded exceed excess upwards beyond somethings twenties "
            "thirties forties fifties sixties seventies eighties nobody everybody",
        )
    )
)
