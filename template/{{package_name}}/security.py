"""Security that holds on every deployment path: response headers and CSRF.

The app sets these headers itself, so they are there with or without nginx
(a Procfile platform, Kubernetes). nginx adds them only to what it answers
on its own (static files, its error pages), never to the app's responses.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from flask_wtf.csrf import CSRFProtect

# Everything the pages load comes from this site: no inline <script> or
# <style>, no plugins, and no other site may show them in a frame (which also
# replaces X-Frame-Options). Loading a script or font from elsewhere means
# adding its origin here, e.g. "script-src 'self' https://cdn.example.com".
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # Browsers must not guess a file's type from its content (an upload run
    # as a script).
    "X-Content-Type-Options": "nosniff",
    # Other sites see only our origin in Referer, never the full URL.
    "Referrer-Policy": "strict-origin-when-cross-origin",
    # No camera, microphone, location or payment prompts from these pages, nor
    # from anything they embed; allow one by listing its origin, e.g. camera=(self).
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    # A window this site opens, or one that opened it, gets no handle on the other
    # (cross-window attacks, tabnabbing); OAuth pop-ups need "same-origin-allow-popups".
    "Cross-Origin-Opener-Policy": "same-origin",
}

# How a page may be cached, unless its view says otherwise. Any cache may keep a
# page that used no session, but must ask again before reusing it; a page that
# read or set the session (a CSRF token, a login) is for that browser alone.
PUBLIC_PAGE = "no-cache"
PRIVATE_PAGE = "private, no-cache"

# HSTS: browsers use only HTTPS for this host for a year. Sent only on
# requests that came over HTTPS (ProxyFix reads X-Forwarded-Proto from the
# proxy), so a site that is still on plain HTTP never locks itself out.
STRICT_TRANSPORT_SECURITY = "max-age=31536000"

# CSRF: every POST, PUT, PATCH and DELETE must carry the session's token, or
# it gets 400. A form sends it in a hidden field named csrf_token, valued
# csrf_token() (templates/base.html shows the line; a Flask-WTF form has
# `form.csrf_token`); JavaScript in an X-CSRFToken header, read from a <meta>
# tag the page adds (base.html shows it). Only such pages make a session: the
# others set no cookie and may be cached. JSON APIs for other programs are
# exempted where they are registered (__init__.py).
csrf = CSRFProtect()


def add_security_headers(response: Response) -> Response:
    # A view that sets one of these itself (a page that must be framed, say)
    # keeps its own value. One pass over the headers, not one per name: this
    # runs on every response.
    present = {name.lower() for name, _ in response.headers}
    response.headers.extend(
        [(name, value) for name, value in HEADERS.items() if name.lower() not in present]
    )
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", STRICT_TRANSPORT_SECURITY)
    return response


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, plus a Cache-Control that fits each page."""

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        # Here, after the view and its template, is where Flask knows whether
        # the page used the session (it adds Vary: Cookie then).
        super().save_session(app, session, response)
        if "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = PRIVATE_PAGE if session.accessed else PUBLIC_PAGE


def check_csrf() -> None:
    # Our own hook instead of Flask-WTF's (WTF_CSRF_CHECK_DEFAULT off, below):
    # it looks at the method first, so a GET costs nothing (Flask-WTF 1.3's
    # looks up exemptions first, on every request).
    config = current_app.config
    if config["WTF_CSRF_ENABLED"] and request.method in config["WTF_CSRF_METHODS"]:
        csrf.protect(apply_exemptions=True)  # honours csrf.exempt(...)


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
    app.session_interface = SessionInterface()
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    csrf.init_app(app)
    app.before_request(check_csrf)
