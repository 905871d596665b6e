"""The enqueued-token budgets in force: explicit ones first, then the project's own.

Explicit limits are ``--queue-limit MODEL=TOKENS`` (which replaces) or
``BATCHFSM_QUEUE_LIMITS``. Where an admin key and a project are configured
(``BATCHFSM_ADMIN_KEY`` or ``OPENAI_ADMIN_KEY``, ``BATCHFSM_PROJECT_ID`` or
``OPENAI_PROJECT_ID``) and the provider is OpenAI, the project's batch queue limits are
read from the Administration API (:mod:`batchfsm.providers.rate_limits`) too. For one
model, first match wins: an explicit limit for the model, the API's for the model, an
explicit ``*``. So ``*`` still covers the models the API says nothing about.

:class:`LiveQueueLimits` is that merge as the plain ``dict`` admission control reads
(:attr:`Settings.queue_limits <batchfsm.config.Settings.queue_limits>`, put there by
:func:`with_api_queue_limits` when the runtime is built): it reads the API lazily, on
first use (a command that admits nothing never calls it), then again at most every
:data:`REFRESH_SECONDS` (after a failure, :data:`RETRY_SECONDS`). A failure never stops
a command: one WARNING says what failed (never the key) and the explicit limits alone
apply, or the API's last good answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar, overload

from batchfsm.config import ENV_ALIASES, ENV_VARS
from batchfsm.errors import GatewayError
from batchfsm.providers.profiles import profile_for
from batchfsm.providers.rate_limits import DEFAULT_BASE_URL, AdminApi, ApiLimits, scrub

if TYPE_CHECKING:
    from _collections_abc import dict_items, dict_keys, dict_values

    from batchfsm.config import Settings

__all__ = [
    "REFRESH_SECONDS",
    "RETRY_SECONDS",
    "ApiState",
    "LiveQueueLimits",
    "admin_api_for",
    "with_api_queue_limits",
]

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 600.0
"""The API's limits are read again at most this often (they change with a usage tier)."""
RETRY_SECONDS = 60.0
"""After a failed read, the next try waits this long."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class ApiState:
    """What the Administration API gave, for ``batchfsm provider limits``."""

    state: Literal["off", "read", "failed", "unsupported"]
    """``off``: no admin key; ``unsupported``: not readable here (see ``detail``)."""
    detail: str | None = None
    project_id: str | None = None
    limits: dict[str, int] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


class LiveQueueLimits(dict[str, int]):
    """``{model: tokens}``: ``explicit`` over the limits ``api`` reads (see the module).

    A real ``dict`` (the settings field's type), whose every read first refreshes it
    when due. ``clock`` is monotonic seconds (injected by tests).
    """

    def __init__(
        self,
        explicit: Mapping[str, int],
        api: AdminApi,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(explicit)
        self.explicit = dict(explicit)
        self.api = api
        self._clock = clock
        self._lock = threading.Lock()
        self._due: float | None = None  # None: never read yet
        self._read: ApiLimits | None = None
        self._error: str | None = None
        self._said: set[str] = set()

    # -- reading the API -----------------------------------------------------------------
    def refresh(self, *, force: bool = False) -> None:
        """Read the API if it is due (or ``force``); never raises for its failures."""
        if not force and self._due is not None and self._clock() < self._due:
            return
        with self._lock:
            now = self._clock()
            if not force and self._due is not None and now < self._due:
                return
            self._due = now + self._read_api()
            merged = {**(self._read.limits if self._read else {}), **self.explicit}
            dict.clear(self)
            dict.update(self, merged)

    def _read_api(self) -> float:
        """One read; returns the seconds until the next."""
        where = "the project's rate limits from OpenAI's Administration API"
        try:
            read = self.api.read()
        except Exception as exc:  # whatever it is, admission goes on without it
            secret = self.api.admin_key.get_secret_value()
            what = str(exc) if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}"
            self._error = scrub(what, secret)
            kept = (
                "keeping the limits it gave before"
                if self._read is not None
                else "going on with the explicit limits only "
                f"(--queue-limit, {ENV_VARS['queue_limits']})"
            )
            self._say(f"queue limits: cannot read {where} ({self._error}); {kept}")
            return RETRY_SECONDS
        self._read, self._error = read, None
        logger.info(
            "queue limits: read %s (%s): %d models with a batch queue limit, %d without",
            where, self.api.route, len(read.limits), len(read.unknown),
        )  # fmt: skip
        if read.skipped:
            shown = "; ".join(read.skipped[:5]) + ("; ..." if len(read.skipped) > 5 else "")
            self._say(f"queue limits: {len(read.skipped)} rows skipped reading {where}: {shown}")
        return REFRESH_SECONDS

    def _say(self, message: str) -> None:
        """A WARNING the first time, DEBUG when the same thing happens again."""
        if message in self._said:
            logger.debug("%s", message)
            return
        self._said.add(message)
        logger.warning("%s", message)

    def state(self) -> ApiState:
        """What the last read gave (reading first if due)."""
        self.refresh()
        read = self._read or ApiLimits({})
        return ApiState(
            "failed" if self._error is not None else "read",
            self._error,
            self.api.project_id,
            dict(read.limits),
            read.unknown,
            read.skipped,
        )

    def sources(self) -> dict[str, Literal["explicit", "api"]]:
        """Where each model's limit in force comes from."""
        self.refresh()
        return {m: "explicit" if m in self.explicit else "api" for m in dict.keys(self)}

    # -- the dict, fresh -----------------------------------------------------------------
    def __getitem__(self, key: str) -> int:
        self.refresh()
        return dict.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:
        self.refresh()
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        self.refresh()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self.refresh()
        return dict.__len__(self)

    @overload
    def get(self, key: str, default: None = None, /) -> int | None: ...
    @overload
    def get(self, key: str, default: int, /) -> int: ...
    @overload
    def get(self, key: str, default: _T, /) -> int | _T: ...
    def get(self, key: str, default: object = None, /) -> object:
        self.refresh()
        return dict.get(self, key, default)

    def keys(self) -> dict_keys[str, int]:
        self.refresh()
        return dict.keys(self)

    def values(self) -> dict_values[str, int]:
        self.refresh()
        return dict.values(self)

    def items(self) -> dict_items[str, int]:
        self.refresh()
        return dict.items(self)

    def copy(self) -> dict[str, int]:
        self.refresh()
        return dict(dict.items(self))

    def __reduce__(self) -> tuple[type[dict[str, int]], tuple[dict[str, int]]]:
        return dict, (self.copy(),)  # a copy or a pickle is a plain snapshot


def admin_api_for(settings: Settings) -> tuple[AdminApi | None, str | None]:
    """The Administration API ``settings`` configure, or why none is read (a sentence);
    (None, None) when no admin key is set. The request goes to ``OPENAI_BASE_URL`` when
    it is set (the sandbox), else to https://api.openai.com/v1."""
    if settings.admin_key is None:
        return None, None
    key_var = f"{ENV_VARS['admin_key']} (or {ENV_ALIASES['admin_key'][0]})"
    profile = profile_for(settings)
    if profile.name != "openai":
        per = " (per deployment)" if profile.name == "azure" else ""
        return None, (
            f"{key_var} is set, but {profile.title} has no Administration API rate-limits "
            "endpoint (it is OpenAI's): no queue limits are read from it; give them with "
            f"--queue-limit or {ENV_VARS['queue_limits']}{per}"
        )
    if not settings.project_id:
        project_var = f"{ENV_VARS['project_id']} (or {ENV_ALIASES['project_id'][0]})"
        return None, (
            f"{key_var} is set without {project_var}: rate limits are per project, so "
            "no queue limits are read from the Administration API"
        )
    base_url = settings.openai_base_url or DEFAULT_BASE_URL
    return AdminApi(settings.admin_key, settings.project_id, base_url), None


def with_api_queue_limits(
    settings: Settings, *, clock: Callable[[], float] = time.monotonic
) -> Settings:
    """``settings`` whose ``queue_limits`` also take the API's (a :class:`LiveQueueLimits`)
    when an admin key and project are configured for OpenAI; otherwise ``settings`` as
    they are, after one WARNING if an admin key is set but cannot be used."""
    if isinstance(settings.queue_limits, LiveQueueLimits):
        return settings
    api, reason = admin_api_for(settings)
    if reason is not None:
        logger.warning("queue limits: %s", reason)
    if api is None:
        return settings
    live = LiveQueueLimits(settings.queue_limits, api, clock=clock)
    return settings.model_copy(update={"queue_limits": live})
