"""Every path reads its secrets through `master_secret.secrets_client()`, whose waits are
bounded so that a Secrets Manager endpoint that cannot be reached (a security group or route
that drops packets) or that never answers ends the run with the reason, in well under Lambda's
timeout, rather than botocore's defaults' minutes (60 s to connect, 60 s a reply, 5 attempts).
The endpoint here is on loopback: one whose packets are dropped (fixture_network.silent), and
one that takes the connection and never replies."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from lambdas.tenant_bootstrap import master_secret
from lambdas.tenant_bootstrap.errors import BootstrapError
from tests.fixture_network import silent
from tests.fixture_postgres import free_port

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:boom/dev/database/master-AbCdEf"
# Three attempts of three seconds, and standard mode's backoff between them (at most 1 s,
# then 2 s): 9 to 12 s. Well under a minute either way, and far under the Lambda's 5 minutes.
BOUND_SECONDS = 20


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A port on loopback that the Secrets Manager client is pointed at. The environment also
    asks for botocore's legacy retries, 5 attempts: the client's own settings must win over
    whatever defaults the botocore it runs with has (the Lambda runtime's, not this venv's)."""
    port = free_port()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "eu-west-1",
                        "AWS_ENDPOINT_URL_SECRETS_MANAGER": f"http://127.0.0.1:{port}",
                        "AWS_RETRY_MODE": "legacy", "AWS_MAX_ATTEMPTS": "5"}.items():
        monkeypatch.setenv(name, value)
    yield port


def read_fails_within_the_bound() -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(BootstrapError) as raised:
        master_secret.secret_json(master_secret.secrets_client(), ARN, "MasterSecretArn")
    return str(raised.value), time.monotonic() - started


def test_an_endpoint_that_drops_packets_fails_the_read_with_the_reason(endpoint: int) -> None:
    with silent(endpoint):
        message, seconds = read_fails_within_the_bound()
    assert message.startswith(f"MasterSecretArn {ARN}: cannot read the secret (")
    assert "Connect timeout" in message
    # Each of the three attempts waited its 3 s to connect: not one attempt, not minutes.
    assert 3 * master_secret.SECRETS_CONNECT_TIMEOUT_SECONDS <= seconds < BOUND_SECONDS


def test_an_endpoint_that_never_answers_is_tried_three_times_then_given_up(
        endpoint: int) -> None:
    accepted: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", endpoint)) as server:
        server.settimeout(0.2)
        done = threading.Event()

        def take_connections_and_say_nothing() -> None:
            while not done.is_set():
                try:
                    accepted.append(server.accept()[0])
                except TimeoutError:
                    continue

        taker = threading.Thread(target=take_connections_and_say_nothing)
        taker.start()
        try:
            message, seconds = read_fails_within_the_bound()
        finally:
            done.set()
            taker.join()
            for conn in accepted:
                conn.close()
    assert message.startswith(f"MasterSecretArn {ARN}: cannot read the secret (")
    assert "Read timeout" in message
    assert len(accepted) == master_secret.SECRETS_ATTEMPTS == 3
    assert 3 * master_secret.SECRETS_READ_TIMEOUT_SECONDS <= seconds < BOUND_SECONDS
