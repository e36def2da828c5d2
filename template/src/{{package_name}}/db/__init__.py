"""The database layer, one concern per module; none of them imports FastAPI.

- connection.py: the URL and asyncpg's connect arguments (TLS, timeouts, the
  URL's libpq parameters), from the settings.
- failures.py: what a failure to connect means (DatabaseUnavailable,
  DatabaseMisconfigured) and how errors are described in logs.
- engine.py: the engine and its pool, and the start-up probe.
- pool.py: the pool's queue, fair to requests waiting for a connection.
- sessions.py: the session factories the request dependencies use
  (api/dependencies.py).
"""
