"""Invalid answers are refused with a message that says what to type instead."""

from __future__ import annotations

import keyword
import sys
from pathlib import Path

import copier
import pytest
import yaml

from harness import REPO
from harness.render import BASE_ANSWERS, template_snapshot, validator

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


# A question's validator as Copier renders it: the values it accepts, and those it refuses
# with this advice. package_name refuses every standard library module and keyword.
STDLIB = {n.lower() for n in sys.stdlib_module_names if not n.startswith("_")}
KEYWORDS = {k for k in keyword.kwlist + keyword.softkwlist if k.islower() and k != "_"}
VALUES = {
    "package_name": (["shop", "my_shop", "_private", "shop2", "flask_shop"],
                     sorted(STDLIB | KEYWORDS), ""),
    "max_body_size": (["10m", "512k", "1g", "2M", "65536"],
                      ["0", "10mb", "10 m", "1.5m", "-1m", "", "10m\n", "ten"], "for example: 10m"),
    "domain": (["example.com", "shop.example.org", "localhost", "a-b.c"],
               ["https://example.com", "example.com:8080", "example.com/shop", "Example.com",
                "a..b", "-a.com", "a-.com", f"{'a' * 64}.com", "", "example.com\n",
                "two names.com"], "for example: shop.example.com"),
}  # fmt: skip


@pytest.mark.parametrize("question", VALUES)
def test_validator_accepts_and_refuses(question: str) -> None:
    accepts, refuses, advice = VALUES[question]
    check = validator(question)
    said = {value: check.render(**{question: value}).strip() for value in accepts + refuses}
    assert {value: said[value] for value in accepts if said[value]} == {}
    assert [value for value in refuses if not said[value] or advice not in said[value]] == []


def test_every_question_helps_and_has_a_default_and_nginx_questions_follow_it() -> None:
    questions = {k: v for k, v in QUESTIONS.items() if not k.startswith("_")}
    assert len(questions) >= 10
    for name, spec in questions.items():
        assert spec.get("help"), f"{name} has no help"
        assert "default" in spec, f"{name} has no default"
    names = list(questions)
    at = names.index("with_nginx")
    assert names[at + 1 : at + 3] == ["max_body_size", "domain"]
    for name in ("max_body_size", "domain"):
        assert QUESTIONS[name]["when"] == "{{ with_nginx }}"
        assert QUESTIONS[name]["type"] == "str"
