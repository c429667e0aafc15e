"""The model service's errors: one root; each message names the thing that is wrong.
They are caught at the HTTP boundary (model_service.http_errors) and answered with a
status and a body that says why.

ModelServiceError
├── CardError (ValueError)          cards: an unknown dataset, site or column
├── TrainingError (ValueError)      training: cannot train with what was asked
│   └── TrainingDataTooSmall
├── RegistryError (LookupError)     registry: no such model, alias or version
│   └── VersionNotFound
├── DriftInputError (ValueError)    drift: a batch that cannot be compared (422)
├── NotReady (RuntimeError)         serving: no model loaded yet (503)
├── PredictionLogUnavailable        predictions: the log did not take a write in time (503)
├── Busy (RuntimeError)             admission: a bound on rows is full (429, Retry-After)
│   └── PredictionLogFull           predictions: too many rows wait for the database
└── ServiceError                    http_errors: an answer with its HTTP status and field
"""

from __future__ import annotations


class ModelServiceError(Exception):
    """The root of the model service's errors."""
