"""FlexGrid's HTTP API (FastAPI): wallet sign-in, signed orders relayed to the chain, one router
per role. `create_app(settings)` builds the application; `flexgrid serve` runs it."""

from frontend_api.main import create_app

__all__ = ["create_app"]
