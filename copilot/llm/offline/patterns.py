"""The `re` module's functions, with every pattern compiled once.

The grammar builds its patterns at run time from the card's words (each feature's names,
value words and sites: some 850 for the heart-disease card). `re` keeps 512 compiled
patterns; past that, it compiles them again on every request, which made reading one
request take ten times as long. Here the cache holds them all; it is bounded (an LRU of
`CACHED` patterns) in case a pattern ever carries words of the request itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

CACHED = 8192


@lru_cache(maxsize=CACHED)
def compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def search(pattern: str, text: str) -> re.Match[str] | None:
    return compiled(pattern).search(text)


def match(pattern: str, text: str) -> re.Match[str] | None:
    return compiled(pattern).match(text)


def fullmatch(pattern: str, text: str) -> re.Match[str] | None:
    return compiled(pattern).fullmatch(text)


def finditer(pattern: str, text: str) -> Iterator[re.Match[str]]:
    return compiled(pattern).finditer(text)


def findall(pattern: str, text: str) -> list[Any]:
    return compiled(pattern).findall(text)


def split(pattern: str, text: str, maxsplit: int = 0) -> list[str]:
    return compiled(pattern).split(text, maxsplit)


def sub(pattern: str, repl: str | Callable[[re.Match[str]], str], text: str, count: int = 0) -> str:
    return compiled(pattern).sub(repl, text, count)
