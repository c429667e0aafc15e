"""Errors the tools raise; each message names the thing that is wrong.

ToolError
├── ModelServiceUnreachable   the model service did not answer
├── ModelServiceUnavailable   it answered 503 (no model loaded, log down) or 5xx
├── InvalidToolInput          the input broke a rule (the model service's 422, or ours)
└── NotFound                  unknown prediction, run or report
"""

from __future__ import annotations


class ToolError(Exception):
    """A tool could not do what was asked; `str(error)` is fit to show a person."""


class ModelServiceUnreachable(ToolError):
    pass


class ModelServiceUnavailable(ToolError):
    pass


class InvalidToolInput(ToolError):
    """The input broke a rule; `problems` lists one sentence per broken rule."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class NotFound(ToolError):
    pass
