"""An async PostgreSQL service: FastAPI over SQLAlchemy 2 asyncio and asyncpg."""
