"""The one redaction (tasks/redaction.py): what it removes, what it leaves, and that JSON text
stays JSON and log records are redacted before any handler sees them."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from mmflow.tasks.redaction import (
    MASK,
    install,
    redact,
    redact_data,
    register_environment,
    register_secret,
    register_url_credentials,
    split_userinfo,
    with_userinfo,
)


def canary(prefix: str = "canary") -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def test_a_registered_secret_is_removed_wherever_it_occurs() -> None:
    key = canary("sk")
    register_secret(SecretStr(key))
    text = f"Incorrect API key provided: {key}. You can find your API key at …{key}…"
    assert key not in redact(text)
    assert redact(text).count(MASK) == 2


def test_its_percent_and_json_escaped_forms_go_too() -> None:
    key = canary('pa"ss/wo rd')
    register_secret(key)
    from urllib.parse import quote

    assert quote(key, safe="") not in redact(f"http://proxy/?x={quote(key, safe='')}")
    dumped = json.dumps({"echo": key})
    assert json.dumps(key)[1:-1] not in redact(dumped)
    assert json.loads(redact(dumped)) == {"echo": MASK}


def test_short_values_are_not_registered_they_would_match_ordinary_words() -> None:
    register_secret("testing")  # moto's credentials
    register_secret("   ")
    register_secret(None)
    assert redact("testing the parser") == "testing the parser"


def test_url_userinfo_is_removed_and_the_host_kept() -> None:
    assert (
        redact("http://user:p4ss@proxy.example:3128/v1") == f"http://{MASK}@proxy.example:3128/v1"
    )
    assert redact("https://svc@gateway/v1") == f"https://{MASK}@gateway/v1"
    # an unescaped @ in a password: everything up to the last @ before the host goes
    assert redact("see http://u:p@ss@host/x now") == f"see http://{MASK}@host/x now"


def test_a_base_url_password_registers_so_a_split_echo_is_caught_too() -> None:
    password = canary("pw")
    register_url_credentials(f"http://gateway-user:{password}@127.0.0.1:9/v1")
    assert password not in redact(f"proxy said: password {password} refused")


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer sk-abc123def",
        "authorization: Basic dXNlcjpwYXNz",
        "x-api-key: sk-ant-abc123",
        "api-key: abc123",
        "{'authorization': 'Bearer sk-abc123def', 'accept': 'json'}",
        '{"x-api-key": "sk-ant-abc123"}',
        "OpenAI(api_key='sk-abc123def')",
        "OPENAI_API_KEY=sk-abc123def",
        "password=hunter2hunter2",
    ],
)
def test_credential_headers_and_items_lose_their_value(text: str) -> None:
    clean = redact(text)
    assert MASK in clean
    for value in ("sk-abc123def", "dXNlcjpwYXNz", "sk-ant-abc123", "abc123", "hunter2"):
        assert value not in clean
    assert "json" in clean if "accept" in text else True


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("https://api.example/v1/models?api_key=abc123&x=1", "x=1"),
        ("https://generativelanguage.googleapis.com/v1/m?key=AIzaSyabc123", "/v1/m"),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIAabc123%2F&"
            "X-Amz-Signature=abc123&X-Amz-Expires=60",
            "X-Amz-Expires=60",
        ),
        ("https://blob.example/c/f?sv=2021&sig=abc123%3D", "sv=2021"),
        ("wss://hub.example/socket?token=abc123", "wss://hub.example/socket"),
        ("http://s3/b/k?AWSAccessKeyId=abc123&Signature=abc123&Expires=1", "Expires=1"),
    ],
)
def test_key_and_signature_query_parameters_lose_their_value(text: str, kept: str) -> None:
    clean = redact(text)
    assert "abc123" not in clean and MASK in clean
    assert kept in clean


@pytest.mark.parametrize(
    "text",
    [
        "openai:gpt-4o@default",
        "s3://bucket/prefix/file.pdf",
        "prompt_tokens=900 completion_tokens=60 max_tokens=1024",
        "cache key=vision-0a1b2c and token count 85",
        "client_error (HTTP 400): Invalid image [invalid_request_error/-]",
        '{"api_key": null, "password": 12, "authorization": true}',
        "the sum 3 + 4 = 7; a:b = c",
    ],
)
def test_text_without_credentials_is_left_as_is(text: str) -> None:
    assert redact(text) == text


_secretish = st.sampled_from(
    [
        "http://u:pw@proxy/v1",
        "Authorization: Bearer sk-x1y2z3",
        "?api_key=abc&x=1",
        "X-Amz-Signature=abc123",
        'say "quoted" and \\ back',
        "api_key",
        "password: ",
    ]
)
_json_values = st.recursive(
    st.none() | st.integers() | st.text(max_size=20) | _secretish,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10) | _secretish, inner, max_size=4)
    ),
    max_leaves=12,
)


@given(_json_values)
def test_redacted_json_text_is_still_json_of_the_same_shape(value: object) -> None:
    for text in (json.dumps(value), json.dumps(value, indent=2, ensure_ascii=False)):
        parsed = json.loads(redact(text))
        assert _shape(parsed) == _shape(value)


def _shape(value: object) -> object:
    """The value's structure: containers, their sizes and the types of their leaves."""
    if isinstance(value, dict):
        return ("dict", sorted(repr(_shape(v)) for v in value.values()))
    if isinstance(value, list):
        return ("list", [_shape(v) for v in value])
    return type(value).__name__


def test_redact_data_walks_keys_values_lists_and_tuples() -> None:
    key = canary("sk")
    register_secret(key)
    data = {key: [f"echo {key}", ("http://a:b@h/", 3)], "n": 1.5, "none": None}
    clean = redact_data(data)
    assert key not in json.dumps(clean)
    assert clean[MASK] == [f"echo {MASK}", (f"http://{MASK}@h/", 3)]
    assert clean["n"] == 1.5 and clean["none"] is None


def test_environment_secrets_and_endpoint_credentials_register(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token, secret = canary("hf"), canary("aws")
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://minio-user:{secret}@127.0.0.1:9000")
    register_environment()
    assert token not in redact(f"401 for token {token}")
    assert secret not in redact(f"signature for {secret} does not match")


def test_log_records_are_redacted_before_any_handler(caplog: pytest.LogCaptureFixture) -> None:
    install()
    key = canary("sk")
    register_secret(key)
    logger = logging.getLogger("mmflow.test.redaction")
    with caplog.at_level(logging.INFO, logger="mmflow.test.redaction"):
        logger.info("calling with %s via %s", key, "http://u:pw@proxy/v1")
        try:
            raise RuntimeError(f"server echoed {key}")
        except RuntimeError:
            logger.exception("call failed")
    text = caplog.text
    assert key not in text and "u:pw" not in text
    assert f"calling with {MASK} via http://{MASK}@proxy/v1" in text
    assert "RuntimeError: server echoed" in text  # the traceback is kept, redacted
    for record in caplog.records:
        formatted = logging.Formatter().format(record)
        assert key not in formatted


def test_install_is_idempotent() -> None:
    install()
    factory = logging.getLogRecordFactory()
    install()
    assert logging.getLogRecordFactory() is factory


@pytest.mark.parametrize(
    ("url", "bare", "userinfo"),
    [
        ("http://gw:pw@proxy:3128/v1", "http://proxy:3128/v1", "gw:pw"),
        ("https://u:p@ss@host", "https://host", "u:p@ss"),
        ("http://host/v1?x=a@b", "http://host/v1?x=a@b", None),
        ("http://host/v1", "http://host/v1", None),
        ("host:8000", "host:8000", None),
    ],
)
def test_userinfo_splits_off_a_url_and_joins_back(url: str, bare: str, userinfo: str) -> None:
    assert split_userinfo(url) == (bare, userinfo)
    assert with_userinfo(bare, userinfo) == url


def test_a_provider_block_keeps_base_url_credentials_in_a_secret_field() -> None:
    """Prefect shows every field but secret ones in plain (the block page, its events)."""
    from mmflow.blocks.providers import OpenAIProvider

    password = canary("pw")
    block = OpenAIProvider(api_key=canary("sk"), base_url=f"http://gw:{password}@proxy:3128/v1")
    assert block.base_url == "http://proxy:3128/v1"
    assert password not in json.dumps(block.model_dump(mode="json"))
    assert block.endpoint == f"http://gw:{password}@proxy:3128/v1"
    assert str(block._build_client().base_url).startswith(f"http://gw:{password}@proxy:3128/v1")
    assert block.label == "openai:gpt-4o@http://proxy:3128/v1"


@pytest.mark.parametrize("flow_name", ["invoice", "batch"])
def test_a_secret_in_an_unexpected_error_stays_out_of_the_stored_run_state(
    prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flow_name: str
) -> None:
    """An error that is not mmflow's escapes a flow body quoting an endpoint with its password:
    Prefect stores the run's state message (`Type: text`) in its database. The boundary
    replaces it with the same text, redacted; the old code stored the password."""
    from prefect import get_client
    from prefect.states import StateType

    import mmflow.flows.batch as batch
    import mmflow.flows.runs as runs
    from mmflow.flows.invoice import invoice_flow

    password = "canary-" + secrets.token_hex(8)

    def unreachable(_: list[str]) -> list[str]:
        raise OSError(f"cannot list https://mmflow:{password}@storage.example/bucket")

    monkeypatch.setattr(runs if flow_name == "invoice" else batch, "expand_inputs", unreachable)
    out = str(tmp_path / "out")
    if flow_name == "invoice":
        state = invoice_flow(inputs=["a.pdf"], out=out, return_state=True)
    else:
        state = batch.batch_flow(source=str(tmp_path), out=out, return_state=True)
    assert state.type is StateType.FAILED
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(state.state_details.flow_run_id).state
    assert stored is not None and stored.message is not None
    assert password not in stored.message, stored.message
    assert "RedactedError" in stored.message and "storage.example" in stored.message


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["invoice", "s3://reader:{secret}@bucket/a.pdf", "--out", "{out}"], "s3://[REDACTED]@"),
        (["invoice", "{out}/a.pdf", "--out", "s3://bucket/out?X-Amz-Signature={secret}"], "OUT"),
        (["batch", "s3://reader:{secret}@bucket/in/", "--out", "{out}"], "[REDACTED]"),
    ],
)
def test_a_location_with_credentials_is_refused_before_a_run_is_created(
    prefect_server: str, tmp_path: Path, args: list[str], shown: str
) -> None:
    """Prefect stores a flow run's parameters as given: a password or a signature written into
    an input, OUT or a batch source would land in its database. The CLI refuses the command
    (exit 2), naming the location without its credentials, and creates no run."""
    from prefect import get_client
    from typer.testing import CliRunner

    from mmflow.cli.app import app

    secret = "canary-" + secrets.token_hex(8)
    with get_client(sync_client=True) as client:
        before = len(client.read_flow_runs())
        result = CliRunner().invoke(
            app, ["run", *(a.format(secret=secret, out=tmp_path) for a in args)]
        )
        after = len(client.read_flow_runs())
    assert result.exit_code == 2, result.output
    assert "carries credentials" in result.output and shown in result.output
    assert secret not in result.output
    assert after == before


def test_a_flow_started_elsewhere_with_credentials_in_a_location_does_no_work(
    prefect_server: str, tmp_path: Path
) -> None:
    """A run created with such parameters (the UI, the API) fails at once, saying why, and
    reads nothing; its parameters are what the caller stored."""
    from prefect.states import StateType

    from mmflow.flows.invoice import invoice_flow

    secret = "canary-" + secrets.token_hex(8)
    out = tmp_path / "out"
    state = invoice_flow(
        inputs=[f"s3://reader:{secret}@bucket/a.pdf"], out=str(out), return_state=True
    )
    assert state.type is StateType.FAILED
    assert "carries credentials" in str(state.message) and secret not in str(state.message)
    assert not out.exists()
