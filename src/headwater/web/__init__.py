"""The web app: dashboards over published data, downloads and run history."""

from headwater.web.app import create_app

__all__ = ["create_app"]
