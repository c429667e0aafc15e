"""The test suite (a package, so `tests.conftest` is ours and not a dependency's `tests`)."""
