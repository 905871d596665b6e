"""Provider profiles as data: which one is chosen, how a provider's words and objects map
onto the eight states and OpenAI's shape (and that nothing unlisted is guessed), which
endpoints each takes, and how each client is built from its own variables."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchfsm.config import ENV_VARS, PROVIDER_NAMES, ConfigError, ProviderName, Settings
from batchfsm.errors import InputFileError
from batchfsm.fsm.models import BatchSnapshot
from batchfsm.fsm.spec import BatchStatus
from batchfsm.providers import PROFILES, detect_provider, make_client, profile_for, profile_named
from batchfsm.providers.objects import read_together
from batchfsm.sandbox.dialects import DIALECTS

EIGHT = {s.value for s in BatchStatus}
CLIENT_VARS = (
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
    "OPENAI_API_VERSION",
)


def test_every_provider_name_has_one_profile_and_one_sandbox_dialect() -> None:
    assert tuple(PROFILES) == PROVIDER_NAMES
    assert all(PROFILES[name].name == name for name in PROVIDER_NAMES)
    # Anthropic's wire is not OpenAI's: its dialect is its own app (sandbox/anthropic.py)
    assert set(DIALECTS) | {"anthropic"} == set(PROVIDER_NAMES)
    assert profile_named("together") is PROFILES["together"]
    with pytest.raises(ValueError, match="'mistral'; known: openai, azure"):
        profile_named("mistral")


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (None, "openai"),
        ("", "openai"),
        ("https://api.openai.com/v1", "openai"),
        ("https://my-res.openai.azure.com/openai/v1/", "azure"),
        ("https://my-res.cognitiveservices.azure.com", "azure"),
        ("https://proj.services.ai.azure.com/api", "azure"),
        ("https://api.groq.com/openai/v1", "groq"),
        ("https://API.TOGETHER.XYZ/v1", "together"),
        ("https://api.together.ai/v1", "together"),
        ("https://openrouter.ai/api/v1", "openrouter"),
        ("http://127.0.0.1:8080/v1", "openai"),  # the sandbox, a proxy: nothing to detect
        ("https://openai.azure.com.attacker.example/v1", "openai"),
        ("https://notopenrouter.ai/v1", "openai"),
        ("https://.openai.azure.com/", "openai"),
        ("http://[::1/v1", "openai"),  # unparsable
    ],
)
def test_the_provider_is_detected_only_from_an_unambiguous_host(url: str | None, name: str) -> None:
    assert detect_provider(url) == name


@given(st.text())
def test_detection_takes_any_text_and_always_names_a_profile(url: str) -> None:
    assert detect_provider(url) in PROVIDER_NAMES


def test_an_explicit_provider_wins_over_detection_and_a_bad_one_names_the_variable() -> None:
    groq_url = "https://api.groq.com/openai/v1"
    assert profile_for(Settings(openai_base_url=groq_url)).name == "groq"
    assert profile_for(Settings(openai_base_url=groq_url, provider="compatible")).name == (
        "compatible"
    )
    assert profile_for(Settings()).name == "openai"
    env = {ENV_VARS["provider"]: "together", "OPENAI_BASE_URL": groq_url}
    assert profile_for(Settings.from_env(env)).name == "together"
    with pytest.raises(ConfigError, match=r"BATCHFSM_PROVIDER='antrhopic': Input should be"):
        Settings.from_env({"BATCHFSM_PROVIDER": "antrhopic"})


def test_together_spells_six_statuses_in_upper_case_and_has_no_finalizing_or_cancelling() -> None:
    together = PROFILES["together"]
    assert {w: together.status(w) for w in ("VALIDATING", "IN_PROGRESS", "COMPLETED")} == {
        "VALIDATING": "validating",
        "IN_PROGRESS": "in_progress",
        "COMPLETED": "completed",
    }
    assert [together.status(w) for w in ("FAILED", "EXPIRED", "CANCELLED")] == [
        "failed",
        "expired",
        "cancelled",
    ]
    # Words Together does not document reach the rulebook as they came: unknown.
    assert together.status("FINALIZING") == "FINALIZING"
    assert together.status("CANCELLING") == "CANCELLING"
    assert together.status("Completed") == "Completed"


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_no_profile_guesses_the_single_l_spellings(name: ProviderName) -> None:
    """Every provider here spells them with two l's (Anthropic's Message Batches, which
    does not, is not OpenAI-wire); ``canceling``/``canceled`` stay unknown."""
    profile = PROFILES[name]
    assert profile.status("canceled") == "canceled"
    assert profile.status("canceling") == "canceling"
    assert all(profile.status(word) == word for word in EIGHT)


@given(name=st.sampled_from(PROVIDER_NAMES), word=st.text())
def test_a_word_maps_only_onto_the_eight_and_an_unlisted_word_passes_unchanged(
    name: ProviderName, word: str
) -> None:
    profile = PROFILES[name]
    mapped = profile.status(word)
    if word in profile.status_words:
        assert mapped in EIGHT
    else:
        assert mapped == word


TOGETHER_JOB: dict[str, Any] = {
    "id": "01234567-8901-2345-6789-012345678901",
    "user_id": "user_789xyz012",
    "input_file_id": "file-input123abc456def",
    "file_size_bytes": 1048576,
    "status": "COMPLETED",
    "job_deadline": "2024-01-16T14:30:00Z",
    "created_at": "2024-01-15T14:30:00Z",
    "endpoint": "/v1/chat/completions",
    "progress": 100,
    "model_id": "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
    "output_file_id": "file-output789xyz012ghi",
    "error_file_id": "file-errors456def789jkl",
    "error": "",
    "completed_at": "2024-01-15T15:45:30Z",
}
"""The object in Together's reference (https://docs.together.ai/reference/batch-create)."""


def test_a_together_job_reads_as_an_openai_batch_with_its_deadline_model_and_end() -> None:
    wrapped = {"job": TOGETHER_JOB, "warning": "model deprecated soon"}  # create's answer
    snapshot = BatchSnapshot.from_api(PROFILES["together"].read_batch(wrapped))

    assert snapshot.status == "completed"
    assert snapshot.id == TOGETHER_JOB["id"]
    assert snapshot.model == TOGETHER_JOB["model_id"]
    assert snapshot.created_at == 1705329000
    assert snapshot.expires_at == 1705329000 + 24 * 3600
    assert snapshot.completed_at == 1705333530
    assert snapshot.request_counts is None  # Together reports a percentage: counts unknown
    assert snapshot.errors == ()


@pytest.mark.parametrize(
    ("status", "field"),
    [("FAILED", "failed_at"), ("EXPIRED", "expired_at"), ("CANCELLED", "cancelled_at")],
)
def test_together_s_one_end_time_lands_on_the_state_it_ended_in(status: str, field: str) -> None:
    job = {**TOGETHER_JOB, "status": status, "error": "  input file had 3 bad lines "}
    snapshot = BatchSnapshot.from_api(PROFILES["together"].read_batch(job))

    assert getattr(snapshot, field) == 1705333530
    assert snapshot.completed_at is None
    assert [(e.code, e.message) for e in snapshot.errors] == [(None, "input file had 3 bad lines")]


def test_a_running_together_job_has_no_end_time_and_the_openai_shape_is_never_overwritten() -> None:
    running = read_together({**TOGETHER_JOB, "status": "IN_PROGRESS", "completed_at": None})
    assert "completed_at" not in running and running["status"] == "IN_PROGRESS"
    kept = read_together({**TOGETHER_JOB, "expires_at": 5, "model": "m", "errors": None})
    assert (kept["expires_at"], kept["model"], kept["errors"]) == (5, "m", None)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from([*TOGETHER_JOB, "job", "errors", "expires_at", "model"]) | st.text(),
        _JSON,
    )
)
def test_reading_any_together_answer_only_moves_fields_and_never_raises(
    answer: dict[str, Any],
) -> None:
    data = read_together(answer)

    assert not {"job_deadline", "model_id", "completed_at", "error"} & set(data)
    unwrapped = isinstance(answer.get("job"), dict) and answer.get("status") is None
    source = answer["job"] if unwrapped else answer
    for key in ("expires_at", "model", "id", "status", "output_file_id"):
        if source.get(key) is not None:
            assert data[key] == source[key]


def test_endpoints_are_narrowed_where_the_provider_names_its_set() -> None:
    for name in ("openai", "azure", "openrouter", "compatible"):
        PROFILES[name].check_endpoint("/v1/embeddings")  # not narrowed: the API decides
    PROFILES["groq"].check_endpoint("/v1/chat/completions")
    with pytest.raises(InputFileError) as refused:
        PROFILES["groq"].check_endpoint("/v1/embeddings")
    assert str(refused.value) == (
        "field 'endpoint': Groq (groq) takes no batches for /v1/embeddings; "
        "it takes /v1/chat/completions"
    )


def test_limits_and_expiry_per_provider() -> None:
    azure, together, openai_ = PROFILES["azure"], PROFILES["together"], PROFILES["openai"]
    assert (azure.max_requests, azure.max_bytes, azure.expires) == (100_000, 200 * 2**20, False)
    assert (together.max_requests, together.max_bytes) == (50_000, 100 * 2**20)
    assert (openai_.max_requests, openai_.max_bytes, openai_.expires) == (50_000, 200 * 2**20, True)
    assert [n for n in PROVIDER_NAMES if not PROFILES[n].expires] == ["azure"]


@pytest.fixture
def no_client_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in CLIENT_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_azure_builds_azure_openai_from_its_own_variables(
    no_client_env: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="set AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY"):
        make_client(PROFILES["azure"])
    no_client_env.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com")
    no_client_env.setenv("AZURE_OPENAI_API_KEY", "azure-secret")
    no_client_env.setenv("OPENAI_API_VERSION", "2024-10-21")

    client = make_client(PROFILES["azure"])

    assert isinstance(client, openai.AzureOpenAI)
    assert str(client.base_url) == "https://res.openai.azure.com/openai/"
    assert client.max_retries == 0


def test_azure_s_v1_url_takes_the_plain_client(no_client_env: pytest.MonkeyPatch) -> None:
    no_client_env.setenv("OPENAI_API_KEY", "k")
    url = "https://res.openai.azure.com/openai/v1/"
    client = make_client(PROFILES["azure"], url)
    assert type(client) is openai.OpenAI
    assert str(client.base_url) == url


def test_a_provider_s_public_url_is_used_when_none_is_set(
    no_client_env: pytest.MonkeyPatch,
) -> None:
    no_client_env.setenv("OPENAI_API_KEY", "k")
    assert str(make_client(PROFILES["groq"]).base_url) == "https://api.groq.com/openai/v1/"
    assert str(make_client(PROFILES["openrouter"]).base_url) == "https://openrouter.ai/api/v1/"
    assert str(make_client(PROFILES["openai"]).base_url) == "https://api.openai.com/v1/"
    given = make_client(PROFILES["groq"], "http://127.0.0.1:9/openai/v1")
    assert str(given.base_url) == "http://127.0.0.1:9/openai/v1/"
    with pytest.raises(ConfigError, match="compatible provider needs OPENAI_BASE_URL"):
        make_client(PROFILES["compatible"])


def test_a_missing_key_names_the_variable_never_a_value(no_client_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="set OPENAI_API_KEY") as missing:
        make_client(PROFILES["together"])
    assert "Together AI" in str(missing.value)
