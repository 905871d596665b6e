"""A small interpreter for the subset of Amazon States Language batchfsm generates.

AWS Step Functions cannot run here, so the tests run the generated definition with this
instead: Task states call a Python function in-process (standing in for the Lambda
service), Wait states call ``sleep(seconds)`` (the tests advance the sandbox's clock
rather than sleeping), Choice, Pass, Succeed and Fail behave as the ASL spec says, and
Retry/Catch apply to errors a task raises as :class:`TaskFailed`.

Supported: JSONPath ``$``, ``$.a.b`` and ``$.a[0]``, and the context object's
``$$.Task.Token``; Parameters/ResultSelector with ``.$`` keys; a Pass state's Result;
InputPath/ResultPath/OutputPath; Choice rules StringEquals,
NumericEquals, NumericGreaterThan, BooleanEquals, IsPresent, And, Or, Not; Wait with
Seconds, SecondsPath, Timestamp, TimestampPath; Retry with IntervalSeconds,
MaxAttempts, BackoffRate, MaxDelaySeconds (jitter is ignored: the longest delay is
used, so runs repeat); callback tasks (``lambda:invoke.waitForTaskToken``) with
TimeoutSeconds or TimeoutSecondsPath: the function is invoked with a fresh task token,
then ``callback(token, timeout)`` stands in for the wait. It returns the output a
``SendTaskSuccess`` carried for that token (the task's result), or None once it has
let ``timeout`` seconds pass (the task then fails with ``States.Timeout``). Anything
else raises ``UnsupportedASLError``: an unsupported construct must fail the test, not
be skipped silently.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
LAMBDA_CALLBACK = "arn:aws:states:::lambda:invoke.waitForTaskToken"
_MISSING = object()
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


class UnsupportedASLError(ValueError):
    """The definition uses an ASL feature this test interpreter does not model; the
    generator never emits one, so meeting it means the generator changed."""


class TaskFailed(Exception):
    """A task's failure as Step Functions names it (``error``) with its ``cause``."""

    def __init__(self, error: str, cause: str = "") -> None:
        self.error = error
        self.cause = cause
        super().__init__(f"{error}: {cause}")


@dataclass
class Execution:
    status: str  # SUCCEEDED | FAILED
    output: Any = None
    error: str | None = None
    cause: str | None = None
    path: list[str] = field(default_factory=list)
    """Every state entered, in order."""
    waited: list[float] = field(default_factory=list)
    """Seconds of every Wait and Retry delay, in order."""


Invoke = Callable[[str, Any], Any]
"""``(function_name, payload) -> result``: raise TaskFailed to fail the task."""
Callback = Callable[[str, float], Any]
"""``(task_token, timeout_seconds) -> output | None`` (None: timed out)."""


def resolve(path: str, data: Any) -> Any:
    """The value at a JSONPath (``_MISSING`` if absent)."""
    if not path.startswith("$"):
        raise UnsupportedASLError(f"JSONPath {path!r}")
    value, pos = data, 1
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None:
            raise UnsupportedASLError(f"JSONPath {path!r}")
        name, index = match.groups()
        if name is not None:
            value = value.get(name, _MISSING) if isinstance(value, dict) else _MISSING
        else:
            i = int(index)
            value = value[i] if isinstance(value, list) and i < len(value) else _MISSING
        if value is _MISSING:
            return _MISSING
        pos = match.end()
    return value


def _required(path: str, data: Any) -> Any:
    value = resolve(path, data)
    if value is _MISSING:
        raise TaskFailed("States.Runtime", f"path {path} not found in the input")
    return value


def _template(template: Any, data: Any, context: Any = None) -> Any:
    """Evaluate a Parameters/ResultSelector template against ``data`` (``$$.`` paths
    against the context object)."""
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            if key.endswith(".$") and value.startswith("$$."):
                out[key[:-2]] = _required(value[1:], context or {})
            elif key.endswith(".$"):
                out[key[:-2]] = _required(value, data)
            else:
                out[key] = _template(value, data, context)
        return out
    if isinstance(template, list):
        return [_template(item, data, context) for item in template]
    return template


def _place(path: str | None, state_input: Any, result: Any) -> Any:
    """ResultPath: where the result goes in the state's input."""
    if path is None:
        return copy.deepcopy(state_input)
    if path == "$":
        return result
    parts = path[2:].split(".")
    if not path.startswith("$.") or not all(parts):
        raise UnsupportedASLError(f"ResultPath {path!r}")
    out = copy.deepcopy(state_input)
    target = out
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = result
    return out


def _matches(rule: dict[str, Any], data: Any) -> bool:
    if "And" in rule:
        return all(_matches(r, data) for r in rule["And"])
    if "Or" in rule:
        return any(_matches(r, data) for r in rule["Or"])
    if "Not" in rule:
        return not _matches(rule["Not"], data)
    value = resolve(rule["Variable"], data)
    if "IsPresent" in rule:
        return (value is not _MISSING) is bool(rule["IsPresent"])
    if value is _MISSING:
        raise TaskFailed("States.Runtime", f"Choice variable {rule['Variable']} not found")
    for op, test in (
        ("StringEquals", lambda v, x: isinstance(v, str) and v == x),
        ("NumericEquals", lambda v, x: _number(v) and v == x),
        ("NumericGreaterThan", lambda v, x: _number(v) and v > x),
        ("BooleanEquals", lambda v, x: isinstance(v, bool) and v is x),
    ):
        if op in rule:
            return bool(test(value, rule[op]))
    raise UnsupportedASLError(f"Choice rule {sorted(rule)}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _error_matches(names: list[str], error: str) -> bool:
    return error in names or ("States.ALL" in names and error != "States.Runtime")


class Interpreter:
    """Runs one definition. ``invoke`` stands in for Lambda; ``sleep`` for waiting;
    ``now`` tells the time a TimestampPath is measured from."""

    def __init__(
        self,
        definition: dict[str, Any],
        *,
        invoke: Invoke,
        sleep: Callable[[float], object],
        now: Callable[[], datetime],
        substitutions: dict[str, str] | None = None,
        max_steps: int = 2000,
        callback: Callback | None = None,
    ) -> None:
        text = _substitute(definition, substitutions or {})
        self.definition = text
        self.invoke = invoke
        self.callback = callback
        self.sleep = sleep
        self.now = now
        self.max_steps = max_steps

    def run(self, execution_input: Any) -> Execution:
        states = self.definition["States"]
        name = self.definition["StartAt"]
        data = copy.deepcopy(execution_input)
        execution = Execution(status="RUNNING")
        for _ in range(self.max_steps):
            execution.path.append(name)
            state = states[name]
            kind = state["Type"]
            if kind == "Succeed":
                execution.status, execution.output = "SUCCEEDED", data
                return execution
            if kind == "Fail":
                execution.status = "FAILED"
                execution.error, execution.cause = state.get("Error"), state.get("Cause")
                execution.output = data
                return execution
            try:
                data, next_name = self._step(name, state, data, execution)
            except TaskFailed as exc:  # an uncaught failure ends the execution
                execution.status, execution.error, execution.cause = "FAILED", exc.error, exc.cause
                execution.output = data
                return execution
            if next_name is None:
                execution.status, execution.output = "SUCCEEDED", data
                return execution
            name = next_name
        raise AssertionError(f"no end after {self.max_steps} states: {execution.path[-20:]}")

    def _step(
        self, name: str, state: dict[str, Any], data: Any, execution: Execution
    ) -> tuple[Any, str | None]:
        kind = state["Type"]
        if kind == "Pass":
            if "Result" in state:
                effective = copy.deepcopy(state["Result"])
            else:
                effective = _template(state["Parameters"], data) if "Parameters" in state else data
            return _place(state.get("ResultPath", "$"), data, effective), _next(state)
        if kind == "Choice":
            for rule in state["Choices"]:
                if _matches(rule, data):
                    return data, rule["Next"]
            if "Default" not in state:
                raise TaskFailed("States.NoChoiceMatched", name)
            return data, state["Default"]
        if kind == "Wait":
            seconds = self._wait_seconds(state, data)
            execution.waited.append(seconds)
            self.sleep(seconds)
            return data, _next(state)
        if kind == "Task":
            return self._task(state, data, execution)
        raise UnsupportedASLError(f"state type {kind}")

    def _wait_seconds(self, state: dict[str, Any], data: Any) -> float:
        if "Seconds" in state:
            return float(state["Seconds"])
        if "SecondsPath" in state:
            seconds = _required(state["SecondsPath"], data)
            if not _number(seconds) or seconds < 0:
                raise TaskFailed("States.Runtime", f"SecondsPath gave {seconds!r}")
            return float(seconds)
        stamp = state.get("Timestamp") or _required(state["TimestampPath"], data)
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        return max(0.0, (when - self.now()).total_seconds())

    def _task(
        self, state: dict[str, Any], data: Any, execution: Execution
    ) -> tuple[Any, str | None]:
        if state["Resource"] not in (LAMBDA_INVOKE, LAMBDA_CALLBACK):
            raise UnsupportedASLError(f"task resource {state['Resource']}")
        waits = state["Resource"] == LAMBDA_CALLBACK
        effective = resolve(state["InputPath"], data) if "InputPath" in state else data
        attempts: dict[int, int] = {}
        while True:
            token = f"token-{uuid.uuid4().hex}"  # a new one per attempt, as Step Functions
            params = _template(state["Parameters"], effective, {"Task": {"Token": token}})
            try:
                payload = self.invoke(params["FunctionName"], params.get("Payload"))
                result = {"Payload": payload, "StatusCode": 200}
                if waits:
                    result = self._await(state, data, token, execution)
                if "ResultSelector" in state:
                    result = _template(state["ResultSelector"], result)
                out = _place(state.get("ResultPath", "$"), data, result)
                if "OutputPath" in state:
                    out = _required(state["OutputPath"], out)
                return out, _next(state)
            except TaskFailed as exc:
                delay = self._retry_delay(state.get("Retry", []), exc.error, attempts)
                if delay is not None:
                    execution.waited.append(delay)
                    self.sleep(delay)
                    continue
                for catcher in state.get("Catch", []):
                    if _error_matches(catcher["ErrorEquals"], exc.error):
                        error = {"Error": exc.error, "Cause": exc.cause}
                        return _place(catcher.get("ResultPath", "$"), data, error), catcher["Next"]
                raise

    def _await(self, state: dict[str, Any], data: Any, token: str, execution: Execution) -> Any:
        """The callback task's wait: its result, or States.Timeout."""
        if self.callback is None:
            raise UnsupportedASLError("a callback task, and no callback given")
        if "TimeoutSecondsPath" in state:
            timeout = _required(state["TimeoutSecondsPath"], data)
            if not _number(timeout) or timeout < 1:
                raise TaskFailed("States.Runtime", f"TimeoutSecondsPath gave {timeout!r}")
        elif "TimeoutSeconds" in state:
            timeout = state["TimeoutSeconds"]
        else:
            raise UnsupportedASLError("a callback task without a timeout waits up to a year")
        output = self.callback(token, float(timeout))
        if output is None:
            execution.waited.append(float(timeout))
            raise TaskFailed("States.Timeout", f"no callback for the task within {timeout} s")
        return output

    @staticmethod
    def _retry_delay(
        retriers: list[dict[str, Any]], error: str, attempts: dict[int, int]
    ) -> float | None:
        for index, retrier in enumerate(retriers):
            if not _error_matches(retrier["ErrorEquals"], error):
                continue
            done = attempts.get(index, 0)
            if done >= retrier.get("MaxAttempts", 3):
                return None
            attempts[index] = done + 1
            delay = retrier.get("IntervalSeconds", 1) * retrier.get("BackoffRate", 2.0) ** done
            if "MaxDelaySeconds" in retrier:
                delay = min(delay, retrier["MaxDelaySeconds"])
            return float(delay)
        return None


def _next(state: dict[str, Any]) -> str | None:
    return None if state.get("End") else state["Next"]


def _substitute(definition: dict[str, Any], substitutions: dict[str, str]) -> dict[str, Any]:
    """CloudFormation's DefinitionSubstitutions: ``${Name}`` in any string."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            for name, value in substitutions.items():
                node = node.replace("${" + name + "}", value)
        return node

    result: dict[str, Any] = walk(definition)
    return result
