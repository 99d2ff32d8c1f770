"""One router per resource, all mounted under /api/v1 by `api.server.main.create_app`."""
