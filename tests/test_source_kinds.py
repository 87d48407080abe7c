"""The source kinds' registry (headwater/sources/__init__.py KINDS): complete, consistent, lazy."""

from __future__ import annotations

import subprocess
import sys
import typing

from headwater.config.model import Source
from headwater.sources import EXTENSIONS, KINDS, kind_of


def _settings_models() -> list[type]:
    union = typing.get_args(Source)[0]
    return list(typing.get_args(union))


def test_every_settings_model_of_the_config_has_exactly_one_kind():
    assert sorted(m.__name__ for m in _settings_models()) == sorted(k.settings.__name__ for k in KINDS)


def test_a_kind_type_is_its_settings_type_and_its_implementation_imports():
    for kind in KINDS:
        assert typing.get_args(kind.settings.model_fields["type"].annotation) == (kind.type,)
        cls = kind.implementation_class()
        assert callable(getattr(cls, "sync", None)), kind
        assert hasattr(cls, "work_parent") == kind.work_folder, kind


def test_extensions_are_the_database_kinds():
    assert EXTENSIONS == {"sqlite": "sqlite", "postgres": "postgres", "mysql": "mysql"}


def test_kind_of_unknown_settings_says_what_to_do():
    try:
        kind_of(object())
    except TypeError as exc:
        assert "KINDS" in str(exc)
    else:
        raise AssertionError("no error")


def test_importing_the_registry_loads_no_source_implementation():
    code = "import sys, headwater.sources; print(sorted(m for m in sys.modules if m.startswith('headwater.sources.') or m == 'psycopg'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
