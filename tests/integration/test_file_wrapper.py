"""wsgi.file_wrapper: a regular file goes from its descriptor to the socket with
sendfile(2), in both modes, from real Django and Flask applications and a plain one.

That the bytes never went through Python shows in the serving process's read calls
(/proc/PID/io syscr): read in blocks, a multi-MiB file costs one call per block (a thousand
and more); sent with sendfile, a handful. strace shows the sendfile calls themselves."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.apps.files import pattern
from tests.integration.conftest import Server, ServerFactory
from tests.integration.test_master import wait_for
from tests.integration.test_slow_readers import _read_response, _stalled_request
from tests.unit.test_file_wrapper import MiB

SIZE = 8 * MiB + 123  # multi-MiB, and no multiple of any block size
FEW_READS = 64  # read calls a sendfile download may cost; in 8 KiB blocks it takes 1024
MODES = {"threaded": (), "workers": ("--workers", "1")}  # one worker: the pid that answers
PLAIN = ("--app", "tests.apps.files:app", "--max-cron-threads", "0")

DJANGO_SETTINGS = """\
SECRET_KEY = "not secret: a test"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
"""

DJANGO_URLS = """\
import os

from django.http import FileResponse, HttpResponse
from django.urls import path


def download(request):
    file = open(os.environ["DOWNLOAD"], "rb")
    file.seek(int(request.GET.get("from", "0")))  # FileResponse counts from the position
    return FileResponse(file, as_attachment=True, filename="payload.bin")


def pid(request):
    return HttpResponse(str(os.getpid()), content_type="text/plain")


urlpatterns = [path("download", download), path("pid", pid)]
"""

DJANGO_WSGI = """\
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()
"""

FLASK_APP = """\
import os

from flask import Flask, send_file

app = Flask(__name__)


@app.get("/download")
def download():
    return send_file(os.environ["DOWNLOAD"], mimetype="application/octet-stream")


@app.get("/pid")
def pid():
    return str(os.getpid())
"""


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("payload") / "payload.bin"
    path.write_bytes(os.urandom(SIZE))
    return path


def django_site(directory: Path) -> tuple[Path, str]:
    """A Django project without a database, serving /download with FileResponse."""
    package = directory / "mysite"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(DJANGO_SETTINGS)
    (package / "urls.py").write_text(DJANGO_URLS)
    (package / "wsgi.py").write_text(DJANGO_WSGI)
    return directory, "mysite.wsgi:application"


def flask_site(directory: Path) -> tuple[Path, str]:
    """A Flask module serving /download with send_file."""
    directory.mkdir(parents=True)
    (directory / "app.py").write_text(FLASK_APP)
    return directory, "app:app"


SITES = {"django": django_site, "flask": flask_site}


@pytest.fixture(
    params=[(site, mode) for site in SITES for mode in MODES], ids=lambda param: "-".join(param)
)
def site_server(
    request: pytest.FixtureRequest, server_factory: ServerFactory, tmp_path: Path, payload: Path
) -> Server:
    site, mode = request.param
    directory, app = SITES[site](tmp_path / site)
    return start_in(server_factory, directory, app, payload, *MODES[mode])


def serving_pid(server: Server) -> int:
    status, _, body = server.get("/pid")  # also the first request: imports are done
    assert status == 200, body
    return int(body)


def read_calls(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscr:"):
            return int(line.split()[1])
    raise AssertionError("no syscr in /proc/PID/io")


def open_on(pid: int, path: Path) -> int:
    """Descriptors of process `pid` open on `path` (counting them all would count the
    database and bus connections that threaded mode's threads open meanwhile)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}") == str(path)
        except OSError:
            pass  # closed meanwhile
    return count


def clients_of(pid: int, port: int) -> int:
    """Connections of process `pid` from clients of `port` it has not closed."""
    return sum(
        1
        for conn in psutil.Process(pid).net_connections("tcp")
        if conn.laddr and conn.laddr.port == port and conn.raddr
    )


def fetch(
    server: Server, path: str, method: str = "GET"
) -> tuple[int, http.client.HTTPMessage, bytes, int]:
    """(status, headers, body, read calls of the serving process meanwhile)."""
    pid = serving_pid(server)
    before = read_calls(pid)
    conn = server.http(timeout=30)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        body = response.read()
        conn.request("GET", "/pid")  # answered once the server is done with the first
        assert conn.getresponse().read() == str(pid).encode()
    finally:
        conn.close()
    return response.status, response.headers, body, read_calls(pid) - before


# -- Django's FileResponse and Flask's send_file ---------------------------------------------


def test_a_framework_download_is_byte_exact_and_sent_with_sendfile(
    site_server: Server, payload: Path
) -> None:
    status, headers, body, reads = fetch(site_server, "/download")
    assert status == 200
    assert headers["Content-Length"] == str(SIZE)
    assert "Transfer-Encoding" not in headers
    assert body == payload.read_bytes()
    assert reads < FEW_READS


@pytest.mark.parametrize("mode", list(MODES))
def test_django_head_sends_the_length_and_reads_no_byte(
    server_factory: ServerFactory, tmp_path: Path, payload: Path, mode: str
) -> None:
    directory, app = django_site(tmp_path / "django")
    server = start_in(server_factory, directory, app, payload, *MODES[mode])
    status, headers, body, reads = fetch(server, "/download", "HEAD")
    assert (status, headers["Content-Length"], body) == (200, str(SIZE), b"")
    assert reads < FEW_READS  # the file is not read through to send nothing


@pytest.mark.parametrize("mode", list(MODES))
def test_django_file_seeked_before_the_response_is_sent_from_there(
    server_factory: ServerFactory, tmp_path: Path, payload: Path, mode: str
) -> None:
    directory, app = django_site(tmp_path / "django")
    server = start_in(server_factory, directory, app, payload, *MODES[mode])
    start = 3 * MiB + 7
    status, headers, body, reads = fetch(server, f"/download?from={start}")
    assert status == 200 and headers["Content-Length"] == str(SIZE - start)
    assert body == payload.read_bytes()[start:]
    assert reads < FEW_READS


def start_in(
    server_factory: ServerFactory, directory: Path, app: str, payload: Path, *args: str
) -> Server:
    return server_factory.start(
        "--app",
        app,
        "--max-cron-threads",
        "0",
        *args,
        env={"DOWNLOAD": str(payload)},
        cwd=directory,
    )


# -- the plain application: lengths, fallback ------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
def test_the_applications_content_length_is_sent_and_never_exceeded(
    server_factory: ServerFactory, payload: Path, mode: str
) -> None:
    server = server_factory.start(*PLAIN, *MODES[mode])
    data = payload.read_bytes()
    conn = server.http(timeout=30)
    try:
        for seek, length in ((0, 1000), (5 * MiB, 2 * MiB + 1)):
            conn.request("GET", f"/file?path={payload}&seek={seek}&length={length}")
            response = conn.getresponse()
            assert response.headers["Content-Length"] == str(length)
            assert response.read() == data[seek : seek + length]
        conn.request("GET", "/pid")  # the same connection: nothing more was sent on it
        assert conn.getresponse().read().isdigit()
    finally:
        conn.close()


def test_a_file_shorter_than_its_content_length_ends_the_connection(
    server_factory: ServerFactory, payload: Path
) -> None:
    server = server_factory.start(*PLAIN, "--workers", "1")
    with server.connect(timeout=30) as sock:
        sock.sendall(
            f"GET /file?path={payload}&seek={SIZE - 10}&length=100 HTTP/1.1\r\n"
            "Host: t\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: 100\r\n" in head
    assert body == payload.read_bytes()[-10:]  # what the file had, then the end
    server.wait_log(r"application sent 10 of 100 bytes; closing the connection")


@pytest.mark.parametrize("mode", list(MODES))
def test_a_file_like_without_a_descriptor_is_read_in_blocks(
    server_factory: ServerFactory, mode: str
) -> None:
    server = server_factory.start(*PLAIN, *MODES[mode])
    status, headers, body = server.get("/bytes?size=300001")
    assert status == 200 and headers.get("Transfer-Encoding") == "chunked"
    assert body == pattern(300001)


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_strace_shows_the_file_leaving_through_sendfile(
    server_factory: ServerFactory, payload: Path, tmp_path: Path
) -> None:
    server = server_factory.start(*PLAIN, "--workers", "1")
    pid = serving_pid(server)
    trace = tmp_path / "trace"
    with subprocess.Popen(
        ["strace", "-f", "-p", str(pid), "-e", "trace=sendfile", "-o", str(trace)],
        stderr=subprocess.PIPE,
    ) as tracer:
        try:
            assert tracer.stderr is not None
            assert b"attached" in tracer.stderr.readline()
            status, _, body = server.get(f"/file?path={payload}")
        finally:
            tracer.terminate()
    assert status == 200 and body == payload.read_bytes()
    calls = [line for line in trace.read_text().splitlines() if "sendfile(" in line]
    sent = sum(int(line.rsplit("=", 1)[1]) for line in calls if "EAGAIN" not in line)
    assert sent == SIZE


# -- slow and vanishing clients ---------------------------------------------------------------


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 MiB, more than any socket buffer holds: written once for the module's tests."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    path.write_bytes(pattern(48 * MiB))
    return path


def test_a_slow_download_leaves_the_only_worker_serving_others(
    server_factory: ServerFactory, big: Path
) -> None:
    server = server_factory.start(*PLAIN, "--workers", "1", "--http-send-timeout", "120")
    pid = serving_pid(server)
    slow = _stalled_request(server, f"/file?path={big}")
    time.sleep(0.5)  # the worker has begun the response, and the client reads none of it
    for _ in range(3):
        assert serving_pid(server) == pid  # another connection, the same worker
    head, body = _read_response(slow, timeout=60)
    slow.close()
    assert f"Content-Length: {48 * MiB}".encode() in head
    assert body == big.read_bytes()
    server.wait_log(rf'"GET /file\?path=\S+ HTTP/1.1" 200 {48 * MiB} ')  # logged: all sent


@pytest.mark.parametrize("mode", list(MODES))
def test_clients_that_leave_mid_download_leave_no_open_file(
    server_factory: ServerFactory, big: Path, mode: str
) -> None:
    server = server_factory.start(*PLAIN, *MODES[mode], "--http-send-timeout", "120")
    pid = serving_pid(server)
    for _ in range(4):
        sock = _stalled_request(server, f"/file?path={big}")
        start = sock.recv(65536)
        assert start.startswith(b"HTTP/1.1 200 OK\r\n"), start[:200]
        sock.close()  # unread data: the kernel resets the connection
    wait_for(
        lambda: open_on(pid, big) == 0 and clients_of(pid, server.port) == 0,
        30,
        f"{open_on(pid, big)} descriptor(s) on the file, "
        f"{clients_of(pid, server.port)} client connection(s) still open",
    )
    assert serving_pid(server) == pid


@pytest.mark.parametrize("mode", list(MODES))
def test_a_client_that_stops_reading_a_file_is_dropped_after_the_send_timeout(
    server_factory: ServerFactory, big: Path, mode: str
) -> None:
    server = server_factory.start(*PLAIN, *MODES[mode], "--http-send-timeout", "1")
    pid = serving_pid(server)
    stalled = _stalled_request(server, f"/file?path={big}&tag=stalled")
    server.wait_log(r'"GET /file\?path=\S+&tag=stalled HTTP/1.1" 200 \d+', timeout=30)
    assert open_on(pid, big) == 0  # the file is closed
    stalled.close()
    assert serving_pid(server) == pid


# -- the pure parts: which file-likes go by sendfile, the fallback, the socket's side --------
