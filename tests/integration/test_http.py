"""HTTP behaviour of a real threaded-mode server, over real sockets."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from tests.integration.conftest import Server, ServerFactory, exchange, parse_responses, read_all


def test_keep_alive_serves_many_requests_on_one_connection(server: Server) -> None:
    conn = server.http()
    pids = set()
    for index in range(20):
        conn.request("GET", f"/echo?i={index}")
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 200 and body["query"] == f"i={index}"
        pids.add(body["pid"])
    conn.close()
    assert len(pids) == 1


def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    raw = b"".join(b"GET /p%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(10))
    responses = parse_responses(
        exchange(server, raw + b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    )
    paths = [json.loads(body)["path"] for _, _, body in responses]
    assert paths == [f"/p{i}" for i in range(10)] + ["/last"]


def test_chunked_request_body(server: Server) -> None:
    raw = (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"
    )
    ((status, _, body),) = parse_responses(exchange(server, raw))
    report = json.loads(body)
    assert status == 200 and report["body_len"] == 9
    assert report["environ_headers"]["CONTENT_LENGTH"] == "9"


def _server_marking_close(server_factory: ServerFactory, tmp_path: Path) -> tuple[Server, Path]:
    """A server whose /stream responses record their close() call in a file."""
    marker = tmp_path / "closed.txt"
    server = server_factory.start(
        "--app", "tests.apps.testapp:app", env={"TESTAPP_CLOSE_MARKER": str(marker)}
    )
    return server, marker


def _closed_tags(marker: Path) -> list[str]:
    """The tags close() recorded; close() runs after the last byte has left, so wait."""
    deadline = time.monotonic() + 10
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return marker.read_text().splitlines()


def test_streaming_response_is_chunked_and_close_is_called(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server, marker = _server_marking_close(server_factory, tmp_path)
    conn = server.http()
    conn.request("GET", "/stream?n=50&size=1000&tag=full")
    response = conn.getresponse()
    assert response.getheader("Transfer-Encoding") == "chunked"
    body = response.read()
    conn.close()
    assert len(body) == 50 * 1000 and body.startswith(b"000000:")
    assert _closed_tags(marker) == ["stream full"]


def test_http10_streaming_response_ends_with_the_connection(server: Server) -> None:
    data = exchange(server, b"GET /stream?n=3&size=10 HTTP/1.0\r\n\r\n", half_close=False)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert body == b"000000:xxx000001:xxx000002:xxx"


def test_write_callable_and_returned_iterable_both_arrive(server: Server) -> None:
    status, _, body = server.get("/write")
    assert (status, body) == (200, b"written-returned")


def test_head_has_headers_but_no_body(server: Server) -> None:
    conn = server.http()
    conn.request("HEAD", "/echo")
    response = conn.getresponse()
    assert response.status == 200 and int(response.getheader("Content-Length", "0")) > 0
    assert response.read() == b""
    conn.request("GET", "/echo")  # the connection is still in step
    assert conn.getresponse().status == 200
    conn.close()


def test_expect_100_continue(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        ((status, _, body),) = parse_responses(read_all(sock))
    assert status == 200 and json.loads(body)["body_len"] == 5


def test_expect_100_continue_with_a_too_large_body_gets_413_at_once(
    server_factory: ServerFactory,
) -> None:
    server = server_factory.start("--app", "tests.apps.testapp:app", "--limit-request-body", "1K")
    with server.connect() as sock:
        sock.sendall(
            b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
        )
        data = read_all(sock)
    assert data.startswith(b"HTTP/1.1 413 ")


def test_large_body_arrives_whole(server: Server) -> None:
    payload = bytes(range(256)) * 40000  # 10 MB, spooled to disk by the parser
    conn = server.http(timeout=30)
    conn.request("POST", "/echo", body=payload)
    report = json.loads(conn.getresponse().read())
    conn.close()
    assert report["body_len"] == len(payload)


def test_wsgi_input_stops_at_the_end_of_the_body(server: Server) -> None:
    raw = (
        b"POST /read-part?n=3 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde"
        b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    first, second = parse_responses(exchange(server, raw))
    assert json.loads(first[2]) == {"part": "abc", "rest": "de"}
    assert json.loads(second[2])["method"] == "GET"


def test_limits_map_to_their_statuses(server_factory: ServerFactory) -> None:
    server = server_factory.start(
        "--app",
        "tests.apps.testapp:app",
        "--limit-request-line",
        "100",
        "--limit-request-field-size",
        "100",
        "--limit-request-fields",
        "5",
        "--limit-request-body",
        "10",
    )
    cases = {
        b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: t\r\n\r\n": 414,
        b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"b" * 200 + b"\r\n\r\n": 431,
        b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X: c\r\n" * 6 + b"\r\n": 431,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n": 413,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n": 400,
    }
    for raw, status in cases.items():
        ((got, headers, _),) = parse_responses(exchange(server, raw))
        assert (got, headers["Connection"]) == (status, "close"), raw[:40]


def test_slow_client_gets_408_and_idle_client_is_closed(server_factory: ServerFactory) -> None:
    server = server_factory.start(
        "--app",
        "tests.apps.testapp:app",
        "--http-header-timeout",
        "1",
        "--http-keepalive-timeout",
        "1",
    )
    with server.connect() as slow, server.connect() as idle:
        slow.sendall(b"GET / HTTP/1.1\r\nHost: slow")
        started = time.monotonic()
        assert read_all(slow).startswith(b"HTTP/1.1 408 ")
        assert read_all(idle) == b""
        assert time.monotonic() - started < 5
        # meanwhile the server answers others without waiting for them
        assert server.get("/echo")[0] == 200


def test_slow_client_does_not_block_the_threads(server_factory: ServerFactory) -> None:
    server = server_factory.start("--app", "tests.apps.testapp:app", "--http-threads", "1")
    slow = [server.connect() for _ in range(5)]
    for sock in slow:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\npartial")
    started = time.monotonic()
    assert server.get("/echo")[0] == 200
    assert time.monotonic() - started < 2
    for sock in slow:
        sock.close()


def test_app_exception_gives_500_and_logs_the_traceback(server: Server) -> None:
    status, _, body = server.get("/error")
    assert status == 500 and b"Traceback" not in body
    server.wait_log(r"(?s)error serving GET /error.*Traceback.*RuntimeError: boom from")
    assert server.get("/echo")[0] == 200


def test_exception_after_headers_closes_the_connection(server: Server) -> None:
    data = exchange(server, b"GET /error-after-start HTTP/1.1\r\nHost: t\r\n\r\n", half_close=False)
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert not data.endswith(b"0\r\n\r\n"), "a broken stream must not look complete"
    server.wait_log("boom while streaming")


def test_client_disconnect_mid_response_is_survived(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server, marker = _server_marking_close(server_factory, tmp_path)
    sock = server.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /stream?n=2000&size=10000&delay=0.001&tag=cut HTTP/1.1\r\nHost: t\r\n\r\n")
    sock.recv(1000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # reset mid-response
    assert _closed_tags(marker) == ["stream cut"]
    assert server.get("/echo")[0] == 200
    assert server.proc.poll() is None


def test_proxy_headers_only_in_proxy_mode(server_factory: ServerFactory) -> None:
    headers = {
        "X-Forwarded-For": "203.0.113.9, 198.51.100.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "shop.example",
    }
    plain = server_factory.start("--app", "tests.apps.testapp:app")
    report = json.loads(plain.get("/echo", **headers)[2])
    assert (report["remote_addr"], report["scheme"]) == ("127.0.0.1", "http")
    proxied = server_factory.start("--app", "tests.apps.testapp:app", "--proxy-mode")
    report = json.loads(proxied.get("/echo", **headers)[2])
    assert (report["remote_addr"], report["scheme"]) == ("198.51.100.7", "https")
    assert report["environ_headers"]["HTTP_HOST"] == "shop.example"


def test_access_log_line(server: Server) -> None:
    server.get("/echo?x=1")
    server.wait_log(
        r'INFO prefork\.access: 127\.0\.0\.1 - "GET /echo\?x=1 HTTP/1\.1" 200 \d+ '
        r"\d+\.\d{3}"
    )


def test_204_has_no_body_and_no_length(server: Server) -> None:
    data = exchange(server, b"GET /empty HTTP/1.1\r\nHost: t\r\n\r\n", half_close=False, timeout=1)
    head = data.split(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 204") and b"Content-Length" not in head
    assert b"Transfer-Encoding" not in head


def _one_answer(server: Server, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    (answer,) = parse_responses(exchange(server, raw))
    return answer


def test_host_rules_of_rfc9112(server: Server) -> None:
    """HTTP/1.1 without Host, with two, or with a value that is no authority: 400 and a
    closed connection, the application never called; HTTP/1.0 without Host is served."""
    for raw in (
        b"GET /echo HTTP/1.1\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nAccept: */*\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: evil.example@good.example\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n",
    ):
        status, headers, body = _one_answer(server, raw)
        assert (status, headers.get("Connection")) == (400, "close"), raw
        assert b'"method"' not in body and b"Traceback" not in body
    status, _, body = _one_answer(server, b"GET /echo HTTP/1.0\r\n\r\n")
    assert status == 200 and "HTTP_HOST" not in json.loads(body)["environ_headers"]


def test_absolute_form_authority_is_the_host(server: Server) -> None:
    """RFC 9112 3.2.2: the application sees the target's authority as HTTP_HOST, not the
    Host header; the request's own fields are left as received."""
    raw = (
        b"GET http://shop.example:8080/echo?a=1 HTTP/1.1\r\nHost: other.example\r\n"
        b"Connection: close\r\n\r\n"
    )
    status, _, body = _one_answer(server, raw)
    report = json.loads(body)
    assert status == 200 and (report["path"], report["query"]) == ("/echo", "a=1")
    assert report["environ_headers"]["HTTP_HOST"] == "shop.example:8080"
    assert ["HOST", "other.example"] in report["headers"]
    raw = b"GET http://user@shop.example/echo HTTP/1.0\r\n\r\n"  # HTTP/1.0 needs no Host
    report = json.loads(_one_answer(server, raw)[2])
    assert report["environ_headers"]["HTTP_HOST"] == "shop.example"
