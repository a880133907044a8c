"""The sealing tests can use the real API server of tests/api (its own anvil and demo market)."""

from tests.api.conftest import api  # noqa: F401  (the module-scoped `api` fixture)
