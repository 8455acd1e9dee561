"""The judging page: a Flask app over a judgments database.

What reaches the browser: the query, the two responses as "Response 1" and "Response 2",
the annotator's name and progress, and a position in the annotator's schedule. Never the
models' names, file names, pair ids or which order a pair is shown in. Model text is
HTML-escaped by Jinja's autoescaping (no `|safe` anywhere), and a Content-Security-Policy
allows only this app's own script file, so text that slipped through could still not run.

Access: bound to loopback, the app refuses requests whose Host header is not a loopback
name (a web page elsewhere cannot reach it through DNS rebinding). With a token (`--host`),
every request needs it, from the link (`?token=...`, then kept in a cookie) or the cookie.
Every POST carries a form key derived from the database's secret, so another site open in
the annotator's browser cannot submit judgments for them.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import unicodedata
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, abort, redirect, render_template, request, url_for
from werkzeug.serving import WSGIRequestHandler, make_server

from ple.annotate.pairs import schedule
from ple.annotate.store import CHOICES, Store

HERE = Path(__file__).parent
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
TOKEN_COOKIE = "ple_annotate_token"
MAX_NAME = 64

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; form-action 'self'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def clean_name(raw: str | None) -> str | None:
    """An annotator name: 1-64 printable characters after trimming; None if invalid."""
    name = unicodedata.normalize("NFC", (raw or "").strip())
    if not name or len(name) > MAX_NAME:
        return None
    if any(unicodedata.category(c).startswith("C") for c in name):
        return None
    return name


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def create_app(db: str | Path, token: str | None = None) -> Flask:
    """The app for `db` (made by `ple annotate serve`). With `token`, every request needs
    it; without, only loopback Host names are served."""
    store = Store(db)
    secret = store.meta["secret"].encode()
    n_tasks = 2 * store.n_pairs
    app = Flask(__name__, template_folder=str(HERE / "templates"),
                static_folder=str(HERE / "static"), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024

    def form_key(name: str) -> str:
        return hmac.new(secret, b"form:" + name.encode(), hashlib.sha256).hexdigest()[:32]

    def plan(name: str) -> list[tuple[int, int]]:
        return schedule(store.n_pairs, store.meta["secret"] + "\n" + name)

    @app.before_request
    def check_access():
        if token is None:
            if _hostname(request.host) not in LOOPBACK_NAMES:
                abort(403, "this server answers only on 127.0.0.1 or localhost")
            return None
        given = request.args.get("token")
        if given is not None:
            if not hmac.compare_digest(given.encode(), token.encode()):
                abort(403, "wrong access token: use the link printed by ple annotate serve")
            args = {k: v for k, v in request.args.items() if k != "token"}
            target = request.path + ("?" + urlencode(args) if args else "")
            response = redirect(target, 303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Lax")
            return response
        cookie = request.cookies.get(TOKEN_COOKIE, "")
        if not hmac.compare_digest(cookie.encode(), token.encode()):
            abort(403, "this server needs its access token: open the link printed by "
                       "ple annotate serve")
        return None

    @app.after_request
    def security_headers(response):
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.get("/")
    def index():
        error = request.args.get("error")
        return render_template("index.html", n_tasks=n_tasks, error=error)

    @app.get("/judge")
    def judge():
        name = clean_name(request.args.get("name"))
        if name is None:
            return redirect(url_for("index", error="name"), 303)
        tasks = plan(name)
        done = store.done(name)
        todo = [i for i, task in enumerate(tasks) if task not in done]
        if not todo:
            return render_template("done.html", name=name, n_tasks=n_tasks)
        position = todo[0]
        pair_id, order = tasks[position]
        pair = store.pair(pair_id)
        first, second = pair.shown(order)
        return render_template("judge.html", name=name, query=pair.query, first=first,
                               second=second, position=position, n_done=len(done),
                               n_tasks=n_tasks, key=form_key(name))

    @app.post("/judge")
    def submit():
        name = clean_name(request.form.get("name"))
        if name is None:
            abort(400, "invalid annotator name")
        if not hmac.compare_digest(request.form.get("key", "").encode(),
                                   form_key(name).encode()):
            abort(403, "stale or foreign form: reload the page")
        choice = request.form.get("choice")
        if choice not in CHOICES:
            abort(400, "choice must be 1, 2 or equal")
        try:
            position = int(request.form.get("position", ""))
        except ValueError:
            abort(400, "invalid position")
        if not 0 <= position < n_tasks:
            abort(400, "invalid position")
        pair_id, order = plan(name)[position]
        store.add(name, pair_id, order, position, choice)
        return redirect(url_for("judge", name=name), 303)

    return app


class _QuietHandler(WSGIRequestHandler):
    """No access log: request lines would carry annotator names to the terminal."""

    def log_request(self, *args, **kwargs):
        pass

    def version_string(self) -> str:
        return "ple-annotate"


class Server:
    """The app on a threaded HTTP server; port 0 picks a free port. `serve_forever()` in
    the foreground, or `start()` / `stop()` in a thread (tests)."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0):
        # Bind here, so a port in use or an unknown host is an OSError for the caller
        # (werkzeug's own bind prints and exits).
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family)
        try:
            self.httpd = make_server(host, port, app, threaded=True,
                                     request_handler=_QuietHandler, fd=sock.fileno())
        finally:
            sock.close()  # the server holds its own duplicate of the socket
        self.host, self.port = host, self.httpd.port
        self._thread: threading.Thread | None = None

    def url(self, token: str | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={token}" if token else "")

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> Server:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
