"""The offline provider: a deterministic reading of requests (no network, no weights)."""
