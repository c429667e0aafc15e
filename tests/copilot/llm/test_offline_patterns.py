"""The offline grammar compiles each pattern it builds once: reading the same requests again
compiles nothing (the `re` module's own cache of 512 was too small for the card's words,
and every request compiled hundreds of patterns again)."""

import re

from copilot.facts import Memory
from copilot.llm.offline import patterns
from copilot.llm.offline.intents import understand
from model_service.cards import DatasetCard

REQUESTS = (
    "63 yo M, asymptomatic CP, BP 145/90, chol 233 mg/dl, max HR 150, ST dep 2.3, exang no",
    "women over 60 at Hungary with a normal thallium scan",
    "what if everyone's cholesterol were 20 lower?",
    "has VA Long Beach drifted since last month?",
    "thal reversible defect, ecg normal, fasting sugar not raised, 2 vessels",
    "which features matter most for diabetics older than 50?",
)


def test_reading_requests_again_compiles_no_pattern(card: DatasetCard) -> None:
    for text in REQUESTS:
        understand(text, Memory(), card)
    before = patterns.compiled.cache_info()
    re.purge()  # nothing left in re's own cache to hide a compile behind
    for text in REQUESTS:
        understand(text, Memory(), card)
    after = patterns.compiled.cache_info()
    assert after.misses == before.misses
    assert after.hits > before.hits
    assert after.currsize < patterns.CACHED
