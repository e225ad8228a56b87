"""SQLAlchemy 2 storage: tables, repositories and Alembic migrations (SQLite and PostgreSQL)."""
