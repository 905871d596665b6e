"""The two calls whose wire differs by provider: uploading an input file and listing.

Both go through the official client (its auth, base URL and error types), so the
gateway's retries and error translation apply unchanged; only the route, the form
fields and the answer's shape come from the profile. ``openai`` is imported on call.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import openai

    from batchfsm.providers.profiles import ProviderProfile

__all__ = ["list_all", "upload_file"]


def upload_file(client: openai.OpenAI, profile: ProviderProfile, name: str, fh: IO[bytes]) -> str:
    """Upload ``fh`` as the profile's batch input; the new file's id.

    OpenAI's route and purpose use the client's own ``files.create``; another (Together's
    ``POST /files/upload`` with ``purpose=batch-api`` and a required ``file_name``) is
    the same multipart request on the profile's route.
    """
    import openai

    if (profile.upload_route, profile.file_purpose) == ("/files", "batch"):
        return client.files.create(file=(name, fh), purpose="batch").id
    uploaded = client.post(
        profile.upload_route,
        cast_to=openai.types.FileObject,
        body={"purpose": profile.file_purpose, "file_name": name},
        files=[("file", (name, fh))],
        options={"headers": {"Content-Type": "multipart/form-data"}},
    )
    return uploaded.id


def list_all(client: openai.OpenAI) -> list[object]:
    """Every batch, from a provider that answers the list with one bare JSON array
    (Together) rather than OpenAI's cursor page, which the client cannot parse."""
    answer = client.get("/batches", cast_to=object)
    return list(answer) if isinstance(answer, list) else [answer]
