"""What a case is: a script to play against the copilot, and what must come of it.

Inputs (`Script`) are what the harness does: user turns, human decisions on the newest
proposal, waiting for expiry, tampering with a stored action; or, for a verifier canary,
a patient and a corruption of its narrative. Metadata (`Expect`) is what the graders
check: per step the tool and key arguments, the exact answer, the words said; for the
case the tool trajectory, the registry aliases, the actions' end states.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from copilot import actions
from tools.catalog import READ_ONLY

ANY = "*"  # a step expectation that does not check the tool
STATE_CHANGING = tuple(actions.STATE_CHANGING)
TOOLS = (*READ_ONLY, *STATE_CHANGING)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Say(_Strict):
    """A user turn."""

    say: str = Field(min_length=1)
    as_user: str = Field(default="ann", alias="as", pattern=r"^[a-z]+$")


class Decide(_Strict):
    """A person's decision on a proposal of this case, then the conversation continues (as
    the agent API and the chat do)."""

    decide: Literal["approve", "edit", "reject"]
    by: str = Field(default="bob", pattern=r"^[a-z]+$")
    arguments: dict[str, Any] | None = None
    comment: str | None = None
    action: int = Field(default=-1, description="Which proposal, in order proposed; -1 newest.")
    resume: bool = True
    concurrent: int = Field(default=1, ge=1, le=4, description="Continue this many at once.")

    @model_validator(mode="after")
    def _edit_has_arguments(self) -> Decide:
        if self.decide == "edit" and self.arguments is None:
            raise ValueError("decide: edit needs arguments")
        return self


class WaitForExpiry(_Strict):
    """Wait until the newest proposal's deadline has passed, then continue."""

    wait_for_expiry: Literal[True]


class Tamper(_Strict):
    """Someone with database access changes a stored action behind the store's back."""

    tamper: dict[str, Any] = Field(description="Column values: arguments and/or status.")
    action: int = -1

    @model_validator(mode="after")
    def _known_columns(self) -> Tamper:
        unknown = set(self.tamper) - {"arguments", "status"}
        if unknown or not self.tamper:
            raise ValueError(f"tamper may set arguments and status, not {sorted(unknown)}")
        return self


Step = Say | Decide | WaitForExpiry | Tamper


class Setup(_Strict):
    """The world a case starts in."""

    registry: Literal["trained", "promoted"] = Field(
        default="trained",
        description="trained: v1 @champion (Cleveland), v2 @challenger (Cleveland + Hungary); "
        "promoted: v2 @champion, v1 @previous-champion.",
    )
    ttl_seconds: int = Field(default=900, ge=1)
    four_eyes: bool = False
    run_note: str | None = Field(
        default=None, description="Written as the reason of the newest training run."
    )
    monitored: bool = Field(
        default=False,
        description="The copilot database holds a real monitor history (evals.monitor_seed).",
    )


Corruption = Literal[
    "none",
    "flipped_direction",
    "invented_number",
    "unknown_feature",
    "wrong_probability",
    "missing_caveat",
    "wrong_unit",
]


class Canary(_Strict):
    """A faithful narrative of a real explanation, corrupted one way."""

    patient: dict[str, Any]
    corruption: Corruption
    caveat: Literal["association", "version", "flagged"] | None = None


class Script(_Strict):
    """The inputs of a case: steps against the copilot, or a verifier canary."""

    steps: list[Step] = []
    setup: Setup = Setup()
    canary: Canary | None = None

    @property
    def approves(self) -> bool:
        """Whether a person approves something in this case (so the registry may change)."""
        return any(isinstance(s, Decide) and s.decide != "reject" for s in self.steps)

    @model_validator(mode="after")
    def _one_kind(self) -> Script:
        if bool(self.steps) == (self.canary is not None):
            raise ValueError("a case has either steps or a canary")
        return self


class Answer(_Strict):
    """An exact answer the step's reply must state, checked against the real model."""

    kind: Literal["probability", "top", "rank", "direction", "compare", "what_if"]
    count: int = Field(default=3, ge=1, le=13)
    features: list[str] = []
    relation: Literal["more", "less"] = "more"
    changes: dict[str, Any] = {}

    @model_validator(mode="after")
    def _features(self) -> Answer:
        needed = {"rank": 1, "direction": 1, "compare": 2}.get(self.kind)
        if needed is not None and len(self.features) != needed:
            raise ValueError(f"answer {self.kind} names {needed} feature(s)")
        if self.kind == "what_if" and not self.changes:
            raise ValueError("answer what_if needs the changes")
        return self


class StepExpect(_Strict):
    """What one step must produce. `tool`: the first tool it calls (a state-changing tool in
    a user turn means a proposal, in a decision step an execution); null: no tool at all."""

    tool: str | None = ANY
    arguments: dict[str, Any] = {}
    says: list[str] = []
    not_says: list[str] = []
    error: str | None = None
    answer: Answer | None = None
    # The reply states the numbers the expected tool gives for the expected arguments
    # (graded by evals.cohorts against the real model).
    cohort_answer: bool = False
    # The expected tool's result is the monitor history stored in the case's copilot
    # database for the expected arguments, and the reply states its numbers (graded by
    # evals.monitoring from the database itself).
    history_answer: bool = False

    @model_validator(mode="after")
    def _known_tool(self) -> StepExpect:
        if self.tool not in (*TOOLS, None, ANY):
            raise ValueError(f"unknown tool {self.tool!r}; known: {', '.join(TOOLS)}")
        return self


class RegistryExpect(_Strict):
    """Aliases at the end (version numbers; null: the alias must not exist) and how many
    versions and training runs the case added."""

    aliases: dict[str, str | None] = {}
    new_versions: int | None = None
    new_runs: int | None = None


class ActionExpect(_Strict):
    tool: str
    status: Literal["pending", "approved", "rejected", "expired", "executed", "failed"]
    arguments: dict[str, Any] = {}
    executions: int | None = None
    result_says: str | None = None


class Expect(_Strict):
    """The metadata of a case: what the graders check."""

    category: str = "simple"
    patient: dict[str, Any] | None = None  # the ground truth for clinical answers
    steps: list[StepExpect | None] = []
    trajectory: list[str] | None = None
    registry: RegistryExpect | None = None
    actions: list[ActionExpect] | None = None
    flags: str | None = Field(
        default=None, description="Canary: a problem the verifier must report ('' = none)."
    )
