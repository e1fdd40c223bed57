"""Shared test configuration."""

pytest_plugins = ["requests_tokenauth.pytest_plugin"]
