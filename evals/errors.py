"""The eval suites' errors: one root; each message names the thing that is wrong.

EvalError
├── SuiteError (ValueError)     datasets: an unknown suite or a case that breaks the schema
├── SetupFailed (RuntimeError)  environment: the scratch world could not be built
└── BaselineError (ValueError)  report: a baseline report that cannot be read
"""

from __future__ import annotations


class EvalError(Exception):
    """The root of the eval suites' errors."""
