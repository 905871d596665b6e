"""Building the official ``openai`` client a profile asks for.

``openai`` is imported on call, never at import time. Keys and endpoints are read by the
clients themselves, by their own conventions (``OPENAI_API_KEY``/``OPENAI_BASE_URL``;
Azure's ``AZURE_OPENAI_ENDPOINT``/``AZURE_OPENAI_API_KEY``/``OPENAI_API_VERSION``),
unless a caller that holds a key (the Lambda) passes it. A missing variable becomes a
:class:`~batchfsm.errors.ConfigError` that names the variables, never a value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from batchfsm.errors import ConfigError

if TYPE_CHECKING:
    import httpx2
    import openai

    from batchfsm.providers.profiles import ProviderProfile

__all__ = ["make_client"]


def make_client(
    profile: ProviderProfile,
    base_url: str | None = None,
    *,
    api_key: str | None = None,
    http_client: httpx2.Client | None = None,
) -> openai.OpenAI:
    """The client for ``profile``, with the client's own retries off (the gateway retries).

    ``base_url`` is ``OPENAI_BASE_URL`` as the settings hold it; unset, the profile's
    public URL is used (so a Groq key is never sent to OpenAI by default). For Azure, a
    base URL ending in ``/openai/v1`` is Azure's v1 API, which takes the plain client;
    otherwise ``AzureOpenAI`` is built, which serves batches and files under
    ``{AZURE_OPENAI_ENDPOINT}/openai/`` with ``api-version`` and an ``api-key`` header.

    :raises ConfigError: a variable the client needs is not set.
    """
    import openai

    if profile.client == "anthropic":  # never an OpenAI client with an Anthropic key
        raise ConfigError("the anthropic provider uses the anthropic client, not openai's")
    if profile.client == "azure" and not _azure_v1(base_url):
        try:
            return openai.AzureOpenAI(api_key=api_key, max_retries=0, http_client=http_client)
        except (openai.OpenAIError, ValueError) as exc:
            raise ConfigError(
                "cannot build the Azure OpenAI client: set AZURE_OPENAI_ENDPOINT, "
                "AZURE_OPENAI_API_KEY and OPENAI_API_VERSION (or OPENAI_BASE_URL="
                "https://RESOURCE.openai.azure.com/openai/v1/ with OPENAI_API_KEY)"
            ) from exc  # the client's message names the variable, never a key
    url = base_url or profile.base_url
    if profile.name == "compatible" and not url:
        raise ConfigError("the compatible provider needs OPENAI_BASE_URL (the server's /v1 URL)")
    try:
        return openai.OpenAI(api_key=api_key, base_url=url, max_retries=0, http_client=http_client)
    except openai.OpenAIError as exc:
        raise ConfigError(
            f"cannot build the client for {profile.title}: set OPENAI_API_KEY (and "
            "OPENAI_BASE_URL for a compatible server or `batchfsm sandbox`)"
        ) from exc


def _azure_v1(base_url: str | None) -> bool:
    if not base_url:
        return False
    try:
        path = urlsplit(base_url).path
    except ValueError:
        return False
    return path.rstrip("/").endswith("/openai/v1")
