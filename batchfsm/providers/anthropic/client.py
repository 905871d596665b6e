"""Building the official ``anthropic`` client (an optional extra, imported on call).

The client reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` itself, by its own
conventions, as the ``openai`` client reads ``OPENAI_*`` (so ``batchfsm sandbox
--dialect anthropic`` is reached by exporting the base URL it prints); a caller holding
a key passes it. A missing package or key is the user's setup, said in one line that
names the fix, never a value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchfsm.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    import anthropic
    import httpx2

__all__ = ["make_anthropic_client", "require_anthropic"]


def require_anthropic() -> None:
    """:raises MissingDependencyError: the ``anthropic`` package is not installed."""
    try:
        import anthropic  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "the anthropic provider needs the anthropic package, which is not installed: "
            "pip install 'batchfsm[anthropic]'",
            missing="anthropic",
            extra="anthropic",
        ) from None


def make_anthropic_client(
    base_url: str | None = None,
    *,
    api_key: str | None = None,
    http_client: httpx2.Client | None = None,
) -> anthropic.Anthropic:
    """An ``anthropic.Anthropic`` with its own retries off (the gateway retries).

    :raises MissingDependencyError: the package is not installed.
    :raises ConfigError: the client found no credentials (``ANTHROPIC_API_KEY``).
    """
    require_anthropic()
    import anthropic

    try:
        client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url, max_retries=0, http_client=http_client
        )
    except (anthropic.AnthropicError, ValueError) as exc:  # its text may carry a value
        raise ConfigError(
            f"cannot build the Anthropic client ({type(exc).__name__}): {_HOW}"
        ) from None
    if client.api_key is None and client.auth_token is None and client.credentials is None:
        raise ConfigError(f"the Anthropic client found no key: {_HOW}")
    return client


_HOW = "set ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL for the sandbox's anthropic dialect)"
