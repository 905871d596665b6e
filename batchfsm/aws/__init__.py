"""batchfsm on AWS: the Lambda entry point, its action contract, the API key from
Secrets Manager, and the Step Functions definition generated from the lifecycle spec.

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
    from batchfsm.aws.lambda_app import LambdaApp, collector_paused, lambda_handler, reset_container

__all__ = ["LambdaApp", "collector_paused", "lambda_handler", "reset_container"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'batchfsm.aws' has no attribute {name!r}")
    value = getattr(importlib.import_module("batchfsm.aws.lambda_app"), name)
    globals()[name] = value
    return value
