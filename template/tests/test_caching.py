import gzip
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from flask_wtf.csrf import generate_csrf


def test_pages_without_a_session_set_no_cookie_and_may_be_cached(client: FlaskClient) -> None:
    for path in ("/", "/nowhere"):
        response = client.get(path)
        assert "Set-Cookie" not in response.headers, path
        assert "Cookie" not in response.vary, path
        assert response.headers["Cache-Control"] == "no-cache", path


def test_a_page_with_a_csrf_token_is_private(app: Flask) -> None:
    @app.get("/form")
    def form() -> str:
        # As a template's csrf_token() does.
        return f'<input type="hidden" name="csrf_token" value="{generate_csrf()}">'

    response = app.test_client().get("/form")
    assert "session=" in response.headers["Set-Cookie"]
    assert response.headers["Cache-Control"] == "private, no-cache"


def static_url(client: FlaskClient, name: str) -> str:
    page = client.get("/").get_data(as_text=True)
    return page.split(f'href="/static/{name}')[1].split('"')[0]


def test_versioned_static_urls_are_kept_for_a_year(client: FlaskClient) -> None:
    versioned = client.get(f"/static/style.css{static_url(client, 'style.css')}")
    assert versioned.status_code == 200
    assert versioned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    # Without a version, the browser must check each time.
    assert client.get("/static/style.css").headers["Cache-Control"] == "no-cache"


def test_static_text_is_gzipped_and_still_conditional(app: Flask, tmp_path: Path) -> None:
    (tmp_path / "big.css").write_text("body { color: black; }\n" * 200)
    app.static_folder = str(tmp_path)
    client = app.test_client()
    plain = client.get("/static/big.css")
    assert "Content-Encoding" not in plain.headers and "Accept-Encoding" in plain.vary
    zipped = client.get("/static/big.css?v=1", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.data) == plain.data
    assert len(zipped.data) < len(plain.data) // 10
    again = client.get(
        "/static/big.css?v=1",
        headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]},
    )
    assert again.status_code == 304
