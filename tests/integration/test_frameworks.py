"""Real Django and Flask applications served in multi-processing mode, set up as
docs/django.md and docs/flask.md tell a user to: the project made by `django-admin
startproject`, migrated, with whitenoise; a Flask module with Flask's own session, uploads
and send_file. The client side is the standard library's http.client."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import django  # noqa: F401 - the test extras install them: missing is a failure, not a skip
import flask  # noqa: F401
import pytest
import whitenoise  # noqa: F401
from psycopg.conninfo import conninfo_to_dict

from tests.integration.conftest import SERVER_BUGS, Server, start_server
from tests.integration.test_master import wait_workers

PASSWORD = "correct horse battery staple"

# Appended to the settings.py that startproject wrote, as docs/django.md does it.
DJANGO_SETTINGS = """

# -- served by prefork (docs/django.md) --
import os

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        **{database!r},
        "CONN_MAX_AGE": 600,
        "CONN_HEALTH_CHECKS": True,
    }}
}}
STATIC_ROOT = BASE_DIR / "staticfiles"
MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
"""

DJANGO_URLS = """\
import os

from django.contrib import admin
from django.http import HttpResponse
from django.urls import path


def whoami(request):
    return HttpResponse(f"{os.getpid()} {request.user.username}", content_type="text/plain")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("whoami/", whoami),
]
"""

FLASK_APP = """\
import hashlib
import os
from pathlib import Path

from flask import Flask, jsonify, request, send_file, session

HERE = Path(__file__).resolve().parent

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ["FLASK_SECRET_KEY"]
app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024


@app.get("/count")
def count():
    session["n"] = session.get("n", 0) + 1
    return jsonify(n=session["n"], pid=os.getpid())


@app.post("/upload")
def upload():
    upload = request.files["file"]
    target = HERE / "uploads" / f"{os.getpid()}-{upload.filename}"
    target.parent.mkdir(exist_ok=True)
    upload.save(target)
    data = target.read_bytes()
    return jsonify(size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   fields=request.form.to_dict())


@app.get("/report")
def report():
    return send_file(HERE / "report.bin", download_name="report.bin", as_attachment=True)
"""


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str:
        values = self.all(name)
        return values[0] if values else ""

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Browser:
    """Keeps cookies as a browser does; each request on a new connection, so that any
    worker may answer it."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.cookies: dict[str, str] = {}

    @property
    def origin(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        response = fetch(self.server, method, path, body, self.cookie_header(), headers)
        for line in response.all("Set-Cookie"):
            for name, morsel in SimpleCookie(line).items():
                self.cookies[name] = morsel.value
        return response

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def post_form(self, path: str, fields: dict[str, str]) -> Response:
        return self.request(
            "POST",
            path,
            urlencode(fields).encode(),
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": self.origin,
                "Referer": self.origin + path,
            },
        )


def fetch(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    cookie: str = "",
    headers: dict[str, str] | None = None,
) -> Response:
    conn = server.http(timeout=30)
    try:
        sent = dict(headers or {})
        if cookie:
            sent["Cookie"] = cookie
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return Response(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


def concurrently(work: Any, clients: int = 6, each: int = 5) -> list[Any]:
    """Results of `work()` called by several clients at once, so that every worker takes
    some of the connections."""
    results: list[Any] = []

    def client() -> None:
        for _ in range(each):
            results.append(work())

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def stop_and_check(server: Server) -> None:
    server.stop()
    for marker in SERVER_BUGS:
        assert marker not in server.log(), f"{marker!r} in the server log:\n{server.log()}"


# -- Django -------------------------------------------------------------------------------


def django_database(uri: str) -> dict[str, str]:
    """The DATABASES entry of a postgresql:// URI."""
    params = conninfo_to_dict(uri)
    keys = {
        "dbname": "NAME",
        "user": "USER",
        "password": "PASSWORD",
        "host": "HOST",
        "port": "PORT",
    }
    return {keys[key]: str(value) for key, value in params.items() if key in keys}


def manage(project: Path, env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def django_project(tmp_path: Path, fresh_database: str) -> tuple[Path, dict[str, str]]:
    """`django-admin startproject mysite`, configured, migrated, a superuser created and
    the static files collected, as docs/django.md deploys it."""
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    project = tmp_path / "mysite"
    settings = project / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text() + DJANGO_SETTINGS.format(database=django_database(fresh_database))
    )
    (project / "mysite" / "urls.py").write_text(DJANGO_URLS)
    env = {
        **os.environ,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "PREFORK_DB_URI": fresh_database,
        "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
    }
    env.pop("PYTHONPATH", None)
    manage(project, env, "migrate", "--noinput")
    manage(
        project,
        env,
        "createsuperuser",
        "--noinput",
        "--username",
        "admin",
        "--email",
        "admin@example.com",
    )
    manage(project, env, "collectstatic", "--noinput")
    return project, env


@pytest.fixture
def django_server(tmp_path: Path, django_project: tuple[Path, dict[str, str]]) -> Iterator[Server]:
    project, env = django_project
    server = start_server(
        tmp_path,
        "--app",
        "mysite.wsgi:application",
        "--workers",
        "2",
        "--max-cron-threads",
        "0",
        "--db_maxconn",
        "4",
        env=env,
        cwd=project,
    )
    try:
        wait_workers(server, 2)
        yield server
    finally:
        stop_and_check(server)


def csrf_token(page: Response) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text())
    assert match, page.text()[:500]
    return match.group(1)


def test_django_admin_login_with_csrf_and_a_session_every_worker_reads(
    django_server: Server,
) -> None:
    browser = Browser(django_server)
    form = browser.request("GET", "/admin/login/?next=/admin/")
    assert form.status == 200 and "csrftoken" in browser.cookies
    assert len(form.all("Date")) == 1
    posted = browser.post_form(
        "/admin/login/?next=/admin/",
        {
            "csrfmiddlewaretoken": csrf_token(form),
            "username": "admin",
            "password": PASSWORD,
            "next": "/admin/",
        },
    )
    assert posted.status == 302, posted.text()[:500]
    assert posted.header("Location") == "/admin/" and "sessionid" in browser.cookies

    index = browser.request("GET", "/admin/")
    assert index.status == 200
    assert "Site administration" in index.text() and "<strong>admin</strong>" in index.text()

    cookie = browser.cookie_header()
    pids: set[str] = set()
    for _ in range(5):  # Django's database session, read by whichever worker answers
        answers = concurrently(lambda: fetch(django_server, "GET", "/whoami/", cookie=cookie))
        assert {(a.status, a.text().split()[-1]) for a in answers} == {(200, "admin")}
        pids |= {a.text().split()[0] for a in answers}
        if len(pids) >= 2:
            break
    assert len(pids) >= 2, "one worker answered every request"


def test_django_refuses_a_wrong_csrf_token(django_server: Server) -> None:
    browser = Browser(django_server)
    form = browser.request("GET", "/admin/login/")
    assert form.status == 200
    token = csrf_token(form)
    wrong = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    refused = browser.post_form(
        "/admin/login/", {"csrfmiddlewaretoken": wrong, "username": "admin", "password": PASSWORD}
    )
    assert refused.status == 403
    assert "sessionid" not in browser.cookies


def test_django_static_files_from_whitenoise(
    django_server: Server, django_project: tuple[Path, dict[str, str]]
) -> None:
    project, _ = django_project
    response = fetch(django_server, "GET", "/static/admin/css/base.css")
    assert response.status == 200
    assert response.header("Content-Type").startswith("text/css")
    assert response.body == (project / "staticfiles" / "admin" / "css" / "base.css").read_bytes()
    assert len(response.all("Date")) == 1


# -- Flask --------------------------------------------------------------------------------


@pytest.fixture
def flask_app(tmp_path: Path) -> Path:
    directory = tmp_path / "flaskapp"
    (directory / "static").mkdir(parents=True)
    (directory / "app.py").write_text(FLASK_APP)
    (directory / "report.bin").write_bytes(os.urandom(200 * 1024))
    (directory / "static" / "site.css").write_text("body { color: #333; }\n")
    return directory


@pytest.fixture
def flask_server(tmp_path: Path, flask_app: Path, database_uri: str) -> Iterator[Server]:
    env = {"FLASK_SECRET_KEY": secrets.token_urlsafe(40)}
    server = start_server(
        tmp_path,
        "--app",
        "app:app",
        "--workers",
        "2",
        "--max-cron-threads",
        "0",
        "--limit-request-body",
        "2M",
        env=env,
        cwd=flask_app,
    )
    try:
        wait_workers(server, 2)
        yield server
    finally:
        stop_and_check(server)


def count(server: Server, cookie: str) -> tuple[int, dict[str, Any], str]:
    response = fetch(server, "GET", "/count", cookie=cookie)
    set_cookie = response.header("Set-Cookie").split(";", 1)[0]
    return response.status, json.loads(response.body), set_cookie


def test_flask_session_cookie_signed_by_one_worker_counts_on_in_another(
    flask_server: Server,
) -> None:
    status, body, cookie = count(flask_server, "")
    assert status == 200 and body["n"] == 1 and cookie.startswith("session=")
    for n in range(2, 6):  # each link of the chain answered by another worker than the last
        previous = body["pid"]
        for _ in range(5):
            answers = concurrently(lambda c=cookie: count(flask_server, c))
            assert {(s, b["n"]) for s, b, _ in answers} == {(200, n)}
            others = [(b, c) for _, b, c in answers if b["pid"] != previous]
            if others:
                break
        assert others, "one worker answered every request"
        body, cookie = others[0]


def multipart(fields: dict[str, str], name: str, data: bytes) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_flask_file_upload_reaches_request_files_whole(
    flask_server: Server, flask_app: Path
) -> None:
    data = os.urandom(300 * 1024 + 17)
    body, content_type = multipart({"title": "scan"}, "scan.bin", data)
    for _ in range(4):
        response = fetch(
            flask_server, "POST", "/upload", body, headers={"Content-Type": content_type}
        )
        assert response.status == 200, response.text()[:500]
        assert json.loads(response.body) == {
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "fields": {"title": "scan"},
        }
    saved = list((flask_app / "uploads").iterdir())
    assert saved and all(path.read_bytes() == data for path in saved)


def test_flask_upload_limits_flask_then_prefork(flask_server: Server) -> None:
    body, content_type = multipart({}, "big.bin", os.urandom(1536 * 1024))
    response = fetch(flask_server, "POST", "/upload", body, headers={"Content-Type": content_type})
    assert response.status == 413 and b"Request Entity Too Large" in response.body  # Flask
    with flask_server.connect(timeout=10) as sock:  # over limit_request_body: never read
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: "
            + content_type.encode()
            + b"\r\nContent-Length: 3145728\r\n\r\n"
        )
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 413 ")


def test_flask_send_file_and_static(flask_server: Server, flask_app: Path) -> None:
    response = fetch(flask_server, "GET", "/report")
    assert response.status == 200
    assert response.body == (flask_app / "report.bin").read_bytes()
    assert response.header("Content-Length") == str(len(response.body))
    assert response.header("Content-Disposition") == "attachment; filename=report.bin"
    assert len(response.all("Date")) == 1
    css = fetch(flask_server, "GET", "/static/site.css")
    assert css.status == 200 and css.header("Content-Type").startswith("text/css")
    assert css.body == (flask_app / "static" / "site.css").read_bytes()
    assert len(css.all("Date")) == 1
