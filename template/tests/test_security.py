from flask import Flask, request
from flask.testing import FlaskClient
from flask_wtf.csrf import generate_csrf


def test_security_headers_on_every_response(client: FlaskClient) -> None:
    for path in ("/", "/nowhere"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert "camera=()" in headers["Permissions-Policy"]


def test_hsts_only_over_https(client: FlaskClient) -> None:
    assert "Strict-Transport-Security" not in client.get("/").headers
    # ProxyFix turns the proxy's X-Forwarded-Proto into the request's scheme.
    secure = client.get("/", headers={"X-Forwarded-Proto": "https"})
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")


def test_a_form_post_needs_the_csrf_token(app: Flask) -> None:
    @app.route("/form", methods=["GET", "POST"])
    def form() -> str:
        if request.method == "POST":
            return f"hello {request.form['name']}"
        # A template calls csrf_token() instead (base.html shows how).
        token = generate_csrf()
        return f'<form method="post"><input type="hidden" name="csrf_token" value="{token}">'

    client = app.test_client()
    assert client.post("/form", data={"name": "Ada"}).status_code == 400

    page = client.get("/form").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    sent = client.post("/form", data={"name": "Ada", "csrf_token": token})
    assert (sent.status_code, sent.get_data(as_text=True)) == (200, "hello Ada")
