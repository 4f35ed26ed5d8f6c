"""The external HTTP/1.1 corpus (../shared/conformance), black-box against a real server.

Every valid case must be echoed exactly (pipelined ones too); every invalid case must get a
4xx (or 501) and a closed connection, and must never reach the application.

One difference from the corpus's expectations, which are gunicorn's: an HTTP/1.1 request
without Host is valid there and refused here with 400, as RFC 9112 3.2 requires. Such a
valid case is checked twice: as it is (the requests before the first one without Host are
echoed, and that one gets the 400), and with a Host field added to each such request (all of
them echoed, with that field first), so that what else the case tests is still tested.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import MODES, Server, exchange, parse_responses, start_server

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "http1-requests.jsonl"
if not CORPUS.exists():  # a checkout outside the workspace may carry its own copy
    CORPUS = Path(__file__).resolve().parents[1] / "data" / "http1-requests.jsonl"

# gunicorn defaults that differ from ours; the corpus's size cases were written for them.
BASE_LIMITS = {
    "limit_request_line": 4094,
    "limit_request_fields": 100,
    "limit_request_field_size": 8190,
}
LIMIT_KEYS = set(BASE_LIMITS)

SKIP_SETTINGS = {
    "proxy_protocol": "PROXY protocol is not supported (no such setting in prefork)",
    "permit_obsolete_folding": "obs-fold is always refused (RFC 9112 5.2); no setting permits it",
    "header_map": "headers with '_' are always dropped (gunicorn's default); no setting changes it",
    "strip_header_spaces": "whitespace before ':' is always refused; no setting permits it",
    "permit_unconventional_http_method": "lower-case methods are always refused",
    "casefold_http_method": "lower-case methods are always refused",
    "forwarded_allow_ips": "gunicorn's X-Forwarded-Ssl cross-check; prefork's proxy_mode "
    "reads X-Forwarded-Proto only",
}
SKIP_CASES = {
    "valid/099.http": "its Content-Length (17914) exceeds the body bytes present (8599): "
    "the request never completes on a live connection",
}


def _cases() -> list[dict[str, Any]]:
    with open(CORPUS, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# A setting that only relaxes gunicorn leaves an invalid case invalid for prefork, which
# never relaxes: those cases run. These two would make prefork accept what gunicorn refuses.
SKIP_INVALID_SETTINGS = {"header_map", "forwarded_allow_ips"}


def _skip_reason(case: dict[str, Any]) -> str | None:
    if case["name"] in SKIP_CASES:
        return SKIP_CASES[case["name"]]
    for key in case["config"]:
        if key in SKIP_SETTINGS and (case["group"] == "valid" or key in SKIP_INVALID_SETTINGS):
            return SKIP_SETTINGS[key]
    return None


def _limits(case: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    limits = dict(BASE_LIMITS)
    for key, value in case["config"].items():
        if key in LIMIT_KEYS:
            limits[key] = value or BASE_LIMITS[key]  # gunicorn reads 0 as "the default"
    return tuple(sorted(limits.items()))


CASES = _cases()
_servers: dict[tuple[tuple[str, int], ...], Server] = {}


@pytest.fixture(scope="module", params=list(MODES))
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, database_server: str
) -> Any:
    tmp = tmp_path_factory.mktemp("conformance")
    mode = MODES[request.param]

    def get(limits: tuple[tuple[str, int], ...]) -> Server:
        if limits not in _servers:
            flags = [f"--{k.replace('_', '-')}={v}" for k, v in limits]
            _servers[limits] = start_server(
                tmp,
                "--app",
                "tests.apps.testapp:echo",
                *flags,
                *mode,
                env={"PREFORK_DB_URI": database_server},
            )
        return _servers[limits]

    yield get
    for server in _servers.values():
        server.stop()
    _servers.clear()


def _expected_body(body: str | dict[str, str]) -> bytes:
    """Most cases give the body as base64; a few give it as text."""
    if isinstance(body, dict):
        return base64.b64decode(body["b64"])
    return body.encode("latin-1")


def _first_without_host(expected: list[dict[str, Any]]) -> int | None:
    """The index of the first HTTP/1.1 request without Host (RFC 9112 3.2: a 400)."""
    for index, want in enumerate(expected):
        if want["version"] == [1, 1] and all(name != "HOST" for name, _ in want["headers"]):
            return index
    return None


ADDED_HOST = "conformance.test"


def _with_host(raw: bytes, expected: list[dict[str, Any]]) -> tuple[bytes, list[dict[str, Any]]]:
    """The case with `Host: ADDED_HOST` after the request line of each HTTP/1.1 request
    that has no Host, and the expectations that go with it."""
    start, out = 0, []
    for want in expected:
        version = "HTTP/{}.{}".format(*want["version"])
        line = f"{want['method']} {want['uri']['raw']} {version}".encode("latin-1")
        at = raw.index(line, start)
        start = raw.index(b"\n", at) + 1
        if want["version"] == [1, 1] and all(name != "HOST" for name, _ in want["headers"]):
            raw = raw[:start] + f"Host: {ADDED_HOST}\r\n".encode() + raw[start:]
            want = {**want, "headers": [["HOST", ADDED_HOST], *want["headers"]]}
        out.append(want)
    return raw, out


def _check_valid(case: dict[str, Any], raw: bytes, server: Server) -> None:
    expected = case["expect"]
    refused = _first_without_host(expected)
    if refused is not None:
        responses = parse_responses(exchange(server, raw))
        assert len(responses) == refused + 1, "the request without Host ends the connection"
        status, headers, body = responses.pop()
        assert (status, headers.get("Connection")) == (400, "close")
        assert b'"method"' not in body, "a request without Host reached the application"
        raw, expected = _with_host(raw, expected)
    _check_echoed(raw, expected, server)


def _check_echoed(raw: bytes, expected: list[dict[str, Any]], server: Server) -> None:
    responses = parse_responses(exchange(server, raw))
    assert len(responses) == len(expected), f"{len(responses)} responses for {len(expected)}"
    for (status, _, body), want in zip(responses, expected, strict=True):
        assert status == 200
        got = json.loads(body)
        assert got["method"] == want["method"]
        assert got["raw"] == want["uri"]["raw"]
        assert got["query"] == want["uri"]["query"]
        assert got["protocol"] == "HTTP/%d.%d" % tuple(want["version"])
        assert got["headers"] == want["headers"]
        assert base64.b64decode(got["body_b64"]) == _expected_body(want["body"])


def _check_invalid(raw: bytes, server: Server, error: str) -> None:
    data = exchange(server, raw)
    if error in ("NoMoreData", "ChunkMissingTerminator"):
        assert data == b"", "a truncated request must get no response, only a close"
        return
    responses = parse_responses(data)
    assert len(responses) == 1, "exactly one response, then the connection is closed"
    status, headers, _ = responses[0]
    assert 400 <= status < 500 or status == 501, status
    assert headers.get("Connection") == "close"
    assert b'"method"' not in data, "an invalid request reached the application"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_corpus_case(case: dict[str, Any], servers: Any) -> None:
    reason = _skip_reason(case)
    if reason:
        pytest.skip(reason)
    raw = base64.b64decode(case["raw_b64"])
    server = servers(_limits(case))
    if case["group"] == "valid":
        _check_valid(case, raw, server)
    else:
        _check_invalid(raw, server, case["expect"])
