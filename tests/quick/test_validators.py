"""Invalid answers are refused with a message that says what to type instead."""

from __future__ import annotations

import keyword
import sys
from pathlib import Path

import copier
import jinja2
import pytest
import yaml
from jinja2_ansible_filters import AnsibleCoreFiltersExtension

from harness import REPO
from harness.render import BASE_ANSWERS, template_snapshot

QUESTIONS = yaml.safe_load((REPO / "copier.yml").read_text())


# answer -> a bad value, and words the refusal must contain (what to type instead)
BAD_ANSWERS = [
    ("project_name", "   ", "Type a name"),
    ("project_name", "x" * 81, "under 80"),
    ("project_slug", "My Shop", "for example: my-shop"),
    ("project_slug", "2 Fast--Shop!", "for example: fast-shop"),
    ("project_slug", "shop--x", "single dashes"),
    ("package_name", "my-shop", "for example: my_shop"),
    ("package_name", "MyShop", "for example: myshop"),
    ("package_name", "2shop", "for example: app_2shop"),
    ("package_name", "class", "Python keyword"),
    ("package_name", "json", "shadow the standard library"),
    ("package_name", "email", "shadow the standard library"),
    ("package_name", "flask", "taken by a dependency"),
    ("package_name", "gunicorn", "taken by a dependency"),
    ("package_name", "tests", "taken by a dependency or a file"),
    ("package_name", "gunicorn_hooks", "taken by a dependency or a file"),
    ("author_name", "", "Type your name"),
    ("author_name", 'Jane "JD" Doe', "without <, > or quotes"),
    ("author_email", "jane.example.com", "name@example.com"),
    ("author_email", "jane@localhost", "name@example.com"),
    ("description", "two\nlines", "one line"),
    ("python_version", "3.9", "3.11"),
    ("ci", "gitlab", "github"),
    ("max_body_size", "10MB", "for example: 10m"),
    ("domain", "a b", "for example: shop.example.com"),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template_snapshot(tmp_path_factory.mktemp("template"))


@pytest.mark.parametrize(("question", "value", "advice"), BAD_ANSWERS)
def test_bad_answer_is_refused_and_nothing_is_written(
    template: Path, tmp_path: Path, question: str, value: str, advice: str
) -> None:
    destination = tmp_path / "project"
    with pytest.raises(ValueError) as excinfo:
        copier.run_copy(
            str(template),
            destination,
            data={**BASE_ANSWERS, question: value},
            defaults=True,
            unsafe=True,
            quiet=True,
        )
    assert advice in str(excinfo.value)
    assert not destination.exists() or not any(destination.iterdir())


def validator(question: str) -> jinja2.Template:
    """A question's validator as Copier renders it: plain text (no HTML to
    escape), importing from the template's root (includes/)."""
    env = jinja2.Environment(  # noqa: S701
        loader=jinja2.FileSystemLoader(REPO), extensions=[AnsibleCoreFiltersExtension]
    )
    return env.from_string(QUESTIONS[question]["validator"])


def refusal(question: str, value: str) -> str:
    """What the validator says to `value`: empty when it is accepted."""
    return validator(question).render(**{question: value}).strip()


def test_package_name_refuses_every_stdlib_module_and_keyword() -> None:
    check = validator("package_name")
    names = {n.lower() for n in sys.stdlib_module_names if not n.startswith("_")}
    names |= {k for k in keyword.kwlist + keyword.softkwlist if k.islower() and k != "_"}
    accepted = sorted(n for n in names if not check.render(package_name=n).strip())
    assert accepted == []


@pytest.mark.parametrize("name", ["shop", "my_shop", "_private", "shop2", "flask_shop"])
def test_package_name_accepts_good_names(name: str) -> None:
    assert validator("package_name").render(package_name=name).strip() == ""


def test_every_question_helps_and_has_a_default() -> None:
    questions = {k: v for k, v in QUESTIONS.items() if not k.startswith("_")}
    assert len(questions) >= 10
    for name, spec in questions.items():
        assert spec.get("help"), f"{name} has no help"
        assert "default" in spec, f"{name} has no default"


# -- the nginx questions -------------------------------------------------------------


@pytest.mark.parametrize("value", ["10m", "512k", "1g", "2M", "65536"])
def test_max_body_size_accepts_nginx_sizes(value: str) -> None:
    assert refusal("max_body_size", value) == ""


@pytest.mark.parametrize("value", ["0", "10mb", "10 m", "1.5m", "-1m", "", "10m\n", "ten"])
def test_max_body_size_refuses_anything_else(value: str) -> None:
    assert "for example: 10m" in refusal("max_body_size", value)


@pytest.mark.parametrize("value", ["example.com", "shop.example.org", "localhost", "a-b.c"])
def test_domain_accepts_host_names(value: str) -> None:
    assert refusal("domain", value) == ""


@pytest.mark.parametrize(
    "value",
    ["https://example.com", "example.com:8080", "example.com/shop", "Example.com", "a..b",
     "-a.com", "a-.com", f"{'a' * 64}.com", "", "example.com\n", "two names.com"],
)  # fmt: skip
def test_domain_refuses_urls_and_bad_names(value: str) -> None:
    assert "for example: shop.example.com" in refusal("domain", value)


def test_nginx_questions_come_right_after_with_nginx_and_depend_on_it() -> None:
    names = [k for k in QUESTIONS if not k.startswith("_")]
    at = names.index("with_nginx")
    assert names[at + 1 : at + 3] == ["max_body_size", "domain"]
    for name in ("max_body_size", "domain"):
        assert QUESTIONS[name]["when"] == "{{ with_nginx }}"
        assert QUESTIONS[name]["type"] == "str"
