"""Offline eval suites of the copilot's behaviour (`copilot eval`).

Datasets are pydantic-evals YAML files in `evals/suites/`: scripted conversations (turns,
human decisions, expiry, tampering) and what must come of them. The runner owns a scratch
world (a trained registry, the model service on a free port, a fresh registry copy and
copilot database per case), runs each case against the configured provider, and grades
end state: what the registry and the action store hold, what executed, and answers
against the real model's numbers computed by the grader, never copied from the transcript.
"""
