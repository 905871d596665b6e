"""Low-level AWS clients, built on botocore alone.

Every AWS call batchfsm makes goes through a low-level client (DynamoDB, S3, Secrets
Manager); boto3 adds only its resource layer and ``s3transfer`` on top, neither used
here, and importing it cost about 18 ms of each Lambda cold start. So clients are made
on a botocore session. A boto3 ``Session`` handed in by a caller is used as it is: it
makes the same clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boto3.session import Session as Boto3Session
    from botocore.session import Session as BotocoreSession

    AnySession = BotocoreSession | Boto3Session

__all__ = ["make_client", "new_session"]


def new_session() -> BotocoreSession:
    """A botocore session with the usual credential, region and endpoint resolution
    (environment, shared config, ``AWS_ENDPOINT_URL_<SERVICE>``, instance roles)."""
    from botocore.session import get_session

    return get_session()


def make_client(service: str, session: AnySession | None = None, **options: Any) -> Any:
    """A low-level client for ``service`` on ``session`` (default: a new botocore
    session); ``options`` are ``create_client``'s (``region_name``, ``config``...)."""
    from botocore.session import Session as BotocoreSession

    if session is None:
        session = new_session()
    if isinstance(session, BotocoreSession):
        return session.create_client(service, **options)
    return session.client(service, **options)  # type: ignore[call-overload]
