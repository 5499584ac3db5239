"""Typed configuration: YAML files validated by pydantic models, ``key=value`` overrides, and
unknown keys rejected with the nearest valid key suggested."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key and what was expected."""
