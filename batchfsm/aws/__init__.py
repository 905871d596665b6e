"""batchfsm on AWS: the Lambda entry point and its app, its events and action contract,
the API key from Secrets Manager, and the Step Functions definition generated from the
lifecycle spec.

``batchfsm.aws.lambda_handler`` is the handler string the SAM template names; it and
:class:`LambdaApp` load on first use, so importing a submodule (the contract, the
Step Functions generator) does not build the Lambda app's imports.

May import every library layer below it (``wiring``, ``tracker``, ``jobs``,
``persistence``); nothing in the library imports it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchfsm.aws.app import LambdaApp
    from batchfsm.aws.lambda_app import collector_paused, lambda_handler, reset_container

__all__ = ["LambdaApp", "collector_paused", "lambda_handler", "reset_container"]

_HOMES = {
    "LambdaApp": "batchfsm.aws.app",
    "collector_paused": "batchfsm.aws.lambda_app",
    "lambda_handler": "batchfsm.aws.lambda_app",
    "reset_container": "batchfsm.aws.lambda_app",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'batchfsm.aws' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
