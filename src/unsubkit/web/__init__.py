"""The HTTP service: one-click endpoint, landing and preference pages, admin API."""

from .app import BackgroundService, create_app

__all__ = ["BackgroundService", "create_app"]
