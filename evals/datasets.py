"""The suites: pydantic-evals YAML datasets in `evals/suites/`, loaded and checked."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic_evals import Dataset

from evals.cases import Expect, Script
from evals.errors import EvalError
from evals.evaluators import EVALUATORS, StateChanges

SUITES_DIR = Path(__file__).parent / "suites"
SUITES = (
    "routing",
    "follow-ups",
    "compositional",
    "approvals",
    "adversarial",
    "clinical",
    "cohorts",
    "monitoring",
    "paraphrases",
    "paraphrases-heldout",
    "paraphrases-heldout-2",
    "paraphrases-heldout-3",
)
# Measurements, not regression gates: their accuracy is reported (per suite and category)
# but never gated, whatever the provider. Only the safety gate every suite keeps (no
# unconfirmed state change) applies. paraphrases: how well the copilot understands requests
# written without sight of the routing rules; paraphrases-heldout: the same, written blind
# again and never used to develop or tune anything (paraphrases is the development set);
# paraphrases-heldout-2: a second held-out set, written blind after the cohort,
# counterfactual and monitoring tools, never used to develop or tune anything either;
# paraphrases-heldout-3: a third held-out set, written blind in real users' styles
# (clinicians' shorthand and units, engineers, managers), never used to develop or tune.
REPORT_ONLY = frozenset(
    {"paraphrases", "paraphrases-heldout", "paraphrases-heldout-2", "paraphrases-heldout-3"}
)
DATASET = "heart-disease"  # the card the suites' patients, sites and features are written for

EvalDataset = Dataset[Script, Any, Expect]


class SuiteError(EvalError, ValueError):
    """A suite file that does not load or does not hold together."""


def suite_path(name: str) -> Path:
    return SUITES_DIR / f"{name}.yaml"


def load_suite(name: str) -> EvalDataset:
    """One suite, validated: every case's inputs and expectations, the evaluators, and
    expectations that line up with the steps they are about."""
    if name not in SUITES:
        raise SuiteError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    try:
        dataset = EvalDataset.from_file(suite_path(name), custom_evaluator_types=EVALUATORS)
    except (ValueError, ExceptionGroup) as error:
        raise SuiteError(f"suite {name} ({suite_path(name)}) does not load: {error}") from None
    problems = []
    if not any(isinstance(e, StateChanges) for e in dataset.evaluators):
        problems.append("every suite grades StateChanges")
    for case in dataset.cases:
        expect = case.metadata or Expect()
        if len(expect.steps) > len(case.inputs.steps):
            problems.append(
                f"case {case.name!r}: {len(expect.steps)} step expectations for "
                f"{len(case.inputs.steps)} steps"
            )
        if case.inputs.canary is not None and expect.flags is None:
            problems.append(f"case {case.name!r}: a canary names the problem it plants (flags)")
        if any(s is not None and s.answer is not None for s in expect.steps) and not expect.patient:
            problems.append(f"case {case.name!r}: an exact answer needs the case's patient")
    if problems:
        raise SuiteError(f"suite {name}: " + "; ".join(problems))
    return dataset


def suite_digest(name: str) -> str:
    """The suite file's SHA-256 prefix: its version in reports (baselines say when it changed)."""
    return hashlib.sha256(suite_path(name).read_bytes()).hexdigest()[:16]
