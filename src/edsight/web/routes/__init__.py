"""Routers of the web app: login/logout, dashboard pages, the versioned REST API."""
