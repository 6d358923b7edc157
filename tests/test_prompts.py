from __future__ import annotations

from pathlib import Path

import pytest

from adgen.errors import TemplateError
from adgen.prompts import TemplateSet, clean_text


def compiled(source: str, name: str = "hero.prompt", dirs: tuple[Path, ...] = ()) -> TemplateSet:
    templates = TemplateSet(dirs)
    templates.add(name, source)
    return templates


def test_renders_with_filters() -> None:
    t = compiled("{{ region | title }} {{ words | truncate_words(3) }} {{ x | default('y') }} "
                 "{{ tags | join_and }} {{ 'lower start' | sentence }}")
    out = t.render("hero.prompt", {"region": "north east", "words": "one two three four",
                                   "tags": ["a", "b", "c"]})
    assert out == "North East one two three… y a, b and c Lower start"


def test_sandbox_blocks_python_internals() -> None:
    t = compiled("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError, match=r"template 'hero.prompt' tried something unsafe: "
                                            r"access to attribute '__class__'"):
        t.render("hero.prompt", {})


def test_syntax_error_names_template_and_line() -> None:
    with pytest.raises(TemplateError, match=r"template 'hero.headline', line 2: syntax error"):
        compiled("ok\n{% if x %}never closed", name="hero.headline")


def test_missing_variable_is_found_before_rendering() -> None:
    t = compiled("{{ region }} {{ first_name }} {{ tier | default('any') }}")
    with pytest.raises(TemplateError) as info:
        t.check_variables(["region", "segment_size"], hint=". Audience columns: a, b")
    assert str(info.value) == (
        "template 'hero.prompt' uses 'first_name', which is not available; available: region, "
        "segment_size. Audience columns: a, b"
    )


def test_included_templates_are_checked_too(tmp_path: Path) -> None:
    (tmp_path / "part.j2").write_text("{{ secret_column }}", encoding="utf-8")
    t = compiled('{% include "part.j2" %}', dirs=(tmp_path,))
    with pytest.raises(TemplateError, match="uses 'secret_column'"):
        t.check_variables(["region"])
    t2 = TemplateSet([tmp_path])
    with pytest.raises(TemplateError, match=r"file 'nope.j2' not found in the template folders"):
        t2.add_file("x.prompt", "nope.j2")


def test_template_loader_cannot_escape_its_folder(tmp_path: Path) -> None:
    (tmp_path / "inner").mkdir()
    (tmp_path / "secret.txt").write_text("secret", encoding="utf-8")
    t = TemplateSet([tmp_path / "inner"])
    with pytest.raises(TemplateError, match="not found"):
        t.add_file("x.prompt", "../secret.txt")


def test_customer_values_are_plain_text() -> None:
    t = compiled("Hi {{ name }}")
    out = t.render("hero.prompt", {"name": "Bob\x1b[31m\u202eevil\n{{ 7*7 }}\x00"})
    assert out == "Hi Bob[31mevil {{ 7*7 }}"
    assert clean_text("  a\t\tb \n c ") == "a b c"
