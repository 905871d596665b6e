"""The six provider profiles, as data, and how one is chosen.

A provider differs from OpenAI in a handful of facts, each stated once here: how its
client is built, which endpoints and limits apply, whether a batch can expire, the words
it uses for the eight statuses and the shape of its Batch object. The machine does not
change: a profile only says which of the eight states a provider's word means, and a
word it does not list reaches the rulebook as it came (so an unmapped word is still
rejected as ``unknown`` and recorded verbatim).

Sources, per profile: OpenAI https://platform.openai.com/docs/api-reference/batch ;
Azure https://learn.microsoft.com/en-us/azure/ai-foundry/openai/how-to/batch ("we do
not expire the jobs that take longer"; 100,000 requests and 200 MB per file); Groq
https://console.groq.com/docs/batch (``/v1/chat/completions``); Together
https://docs.together.ai/docs/inference/batch/overview (50,000 requests, 100 MB,
upper-case statuses without FINALIZING or CANCELLING, ``job_deadline``, ``model_id``,
uploads to ``/files/upload`` with ``purpose=batch-api``); OpenRouter
https://openrouter.ai/docs/client-sdks/python/components/batchobjectstatus (the eight
words on objects). Where a provider publishes no limit, OpenAI's apply, and where it
names no endpoint set, none is narrowed (the API's own answer then decides). Anthropic
https://platform.claude.com/docs/en/build-with-claude/batch-processing (100,000
requests or 256 MB per batch, requests inline, 24 h, results kept 29 days) is not
OpenAI's wire: its profile names the facts, :mod:`batchfsm.providers.anthropic` the
gateway and the mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from batchfsm.config import PROVIDER_NAMES, ProviderName
from batchfsm.errors import InputFileError
from batchfsm.fsm.spec import BatchStatus
from batchfsm.providers.anthropic.mapping import ENDPOINT as MESSAGES
from batchfsm.providers.anthropic.mapping import read_anthropic
from batchfsm.providers.objects import read_together

if TYPE_CHECKING:
    from batchfsm.config import Settings

__all__ = ["PROFILES", "ProviderProfile", "detect_provider", "profile_for", "profile_named"]

MB = 1024 * 1024
CHAT = "/v1/chat/completions"


@dataclass(frozen=True, slots=True)
class ProviderProfile:
    """What batchfsm needs to know about one provider's Batch API (see the module)."""

    name: ProviderName
    title: str
    client: Literal["openai", "azure", "anthropic"]
    """``azure``: ``openai.AzureOpenAI`` (``AZURE_OPENAI_ENDPOINT``,
    ``AZURE_OPENAI_API_KEY``, ``OPENAI_API_VERSION``); ``openai``: ``openai.OpenAI``;
    ``anthropic``: ``anthropic.Anthropic`` behind its own gateway
    (:class:`~batchfsm.providers.anthropic.AnthropicGateway`)."""
    base_url: str | None = None
    """The public base URL used when ``OPENAI_BASE_URL`` is unset (None: the client's)."""
    hosts: tuple[str, ...] = ()
    """Hosts that identify the provider in a base URL; a leading dot matches a suffix."""
    endpoints: frozenset[str] | None = None
    """The batch endpoints it takes; None: every one batchfsm takes."""
    max_requests: int = 50_000
    max_bytes: int = 200 * MB
    max_embedding_inputs: int = 50_000
    expires: bool = True
    """False: a batch running past ``expires_at`` is not expired by the provider, so the
    deadline warnings and the past-deadline alert would be false."""
    status_words: Mapping[str, BatchStatus] = field(default_factory=lambda: MappingProxyType({}))
    """The provider's own words for statuses, beyond the eight themselves."""
    object_shape: Literal["openai", "together", "anthropic"] = "openai"
    list_shape: Literal["page", "array"] = "page"
    """``page``: OpenAI's cursor page; ``array``: one bare JSON array of every batch."""
    upload_route: str = "/files"
    file_purpose: str = "batch"
    output_expiry: bool = False
    """Whether batch create documents ``output_expires_after`` (OpenAI, Azure); elsewhere
    it is not sent, since a provider may refuse a parameter it does not know."""

    def status(self, word: str) -> str:
        """The status value for the provider's ``word``: one of the eight when the word
        is listed (or is one of them), else the word unchanged."""
        mapped = self.status_words.get(word)
        return word if mapped is None else mapped.value

    def read_batch(self, answer: object) -> object:
        """The provider's Batch object in OpenAI's shape, its status word mapped.

        Only the shape and the word change; values are left for
        :meth:`~batchfsm.fsm.models.BatchSnapshot.from_api` to read or refuse, and an
        answer that is not an object passes untouched so the refusal names what it was.
        """
        if not isinstance(answer, Mapping) or (
            self.object_shape == "openai" and not self.status_words
        ):
            return answer  # nothing to map (OpenAI's wire): no copy on a poll's hot path
        if self.object_shape == "anthropic":  # its status needs more than the word
            return read_anthropic(answer)
        data = read_together(answer) if self.object_shape == "together" else dict(answer)
        word = data.get("status")
        if isinstance(word, str):
            data["status"] = self.status(word)
        return data

    def check_endpoint(self, endpoint: str) -> None:
        """:raises InputFileError: the provider takes no batches for ``endpoint``."""
        if endpoint == MESSAGES and self.endpoints is None:  # Anthropic's alone
            raise InputFileError(
                f"{MESSAGES} batches are Anthropic's Message Batches: use --provider "
                f"anthropic (not {self.name})",
                field="endpoint",
            )
        if self.endpoints is not None and endpoint not in self.endpoints:
            offered = ", ".join(sorted(self.endpoints))
            raise InputFileError(
                f"{self.title} ({self.name}) takes no batches for {endpoint}; it takes {offered}",
                field="endpoint",
            )


def _upper(*statuses: BatchStatus) -> Mapping[str, BatchStatus]:
    return MappingProxyType({s.value.upper(): s for s in statuses})


PROFILES: Mapping[ProviderName, ProviderProfile] = MappingProxyType(
    {
        "openai": ProviderProfile(
            name="openai",
            title="OpenAI",
            client="openai",
            hosts=("api.openai.com",),
            output_expiry=True,
        ),
        "azure": ProviderProfile(
            name="azure",
            title="Azure OpenAI",
            client="azure",
            hosts=(".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com"),
            max_requests=100_000,
            expires=False,
            output_expiry=True,
        ),
        "groq": ProviderProfile(
            name="groq",
            title="Groq",
            client="openai",
            base_url="https://api.groq.com/openai/v1",
            hosts=("api.groq.com",),
            endpoints=frozenset({CHAT}),
        ),
        "together": ProviderProfile(
            name="together",
            title="Together AI",
            client="openai",
            base_url="https://api.together.xyz/v1",
            hosts=("api.together.xyz", "api.together.ai"),
            endpoints=frozenset({CHAT}),
            max_bytes=100 * MB,
            status_words=_upper(
                BatchStatus.VALIDATING,
                BatchStatus.IN_PROGRESS,
                BatchStatus.COMPLETED,
                BatchStatus.FAILED,
                BatchStatus.EXPIRED,
                BatchStatus.CANCELLED,
            ),
            object_shape="together",
            list_shape="array",
            upload_route="/files/upload",
            file_purpose="batch-api",
        ),
        "openrouter": ProviderProfile(
            name="openrouter",
            title="OpenRouter",
            client="openai",
            base_url="https://openrouter.ai/api/v1",
            hosts=("openrouter.ai",),
        ),
        "compatible": ProviderProfile(
            name="compatible", title="an OpenAI-compatible server", client="openai"
        ),
        "anthropic": ProviderProfile(
            name="anthropic",
            title="Anthropic Message Batches",
            client="anthropic",
            endpoints=frozenset({MESSAGES}),
            max_requests=100_000,
            max_bytes=256 * MB,
            object_shape="anthropic",
        ),
    }
)
"""Every profile by name; the names are :data:`~batchfsm.config.PROVIDER_NAMES`."""


def profile_named(name: str) -> ProviderProfile:
    """:raises ValueError: naming the unknown profile and the known ones."""
    for profile in PROFILES.values():
        if profile.name == name:
            return profile
    raise ValueError(f"no provider profile {name!r}; known: {', '.join(PROVIDER_NAMES)}")


def detect_provider(base_url: str | None) -> ProviderName:
    """The provider a base URL's host names unambiguously, else ``openai``.

    Any text is accepted: an unset, unparsable or unknown URL (a proxy, the sandbox)
    says nothing, and then OpenAI's profile applies unless one is chosen explicitly.
    """
    if not base_url:
        return "openai"
    try:
        host = (urlsplit(base_url.strip()).hostname or "").rstrip(".")
    except ValueError:
        return "openai"
    found = {p.name for p in PROFILES.values() if any(_matches(host, h) for h in p.hosts)}
    return found.pop() if len(found) == 1 else "openai"


def _matches(host: str, pattern: str) -> bool:
    if pattern.startswith("."):
        return host.endswith(pattern) and len(host) > len(pattern)
    return host == pattern


def profile_for(settings: Settings) -> ProviderProfile:
    """The profile ``settings`` choose: ``provider`` (``BATCHFSM_PROVIDER``, or
    ``--provider``), else the one ``openai_base_url`` names, else OpenAI's."""
    return PROFILES[settings.provider or detect_provider(settings.openai_base_url)]
