"""The benchmark: the generated service against FastAPI + raw asyncpg, the
generated test suite, and `copier copy`. Run it with
`uv run --group bench python -m bench` (see __main__.py and the README)."""
