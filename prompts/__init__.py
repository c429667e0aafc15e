"""Prompt texts, kept as files beside this module; `load` reads one."""

from importlib.resources import files


def load(name: str) -> str:
    """The text of `prompts/<name>.md`."""
    return (files(__package__) / f"{name}.md").read_text(encoding="utf-8")
