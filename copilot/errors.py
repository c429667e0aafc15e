"""The copilot's errors: one root for the core, the LLM layer, the graph and the
surfaces; each message names the thing that is wrong and is fit to show a person. They
are caught only at the boundaries: the agent API answers them with a status
(copilot.api.errors), the chat and the terminal with one line.

CopilotError
├── ActionError                 actions: a request about a pending action that cannot be granted
│   ├── UnknownAction           (404)
│   ├── InvalidArguments        arguments that break the tool's rules (422), `problems`
│   ├── ActionConflict          expired or already decided (409)
│   │   └── AlreadyDecided      carries the action as it is now
│   ├── NotAllowed              the four-eyes rule or a role (403)
│   └── ArgumentsTampered       the audit trail does not back what would run (refused)
├── ConversationError           conversations
│   └── TurnInProgress          another turn of the conversation runs (409)
├── KeyWithdrawn                chat.access: the session's key is no longer configured
├── ApiConfigError (ValueError) api.auth: the agent API cannot start with these keys
├── UiError                     chat.server: the chat cannot start
├── LaunchError                 cli.launcher: `copilot up` could not start a service
└── BenchError                  cli.bench: a benchmark could not run

Below the copilot: tools.errors.ToolError (the tools) and
model_service.errors.ModelServiceError (the model service); beside it:
evals.errors.EvalError (the eval suites). Responses of the agent API are
copilot.api.errors.ApiError (a status and a body), not failures of the copilot.
"""

from __future__ import annotations


class CopilotError(Exception):
    """The root of the copilot's errors."""
