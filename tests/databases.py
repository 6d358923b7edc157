"""The databases the SQL tests run against, behind one small helper: DuckDB (a file in the
test's folder) and the session's PostgreSQL (tests/postgres.py; a schema of its own per test,
so tests on two workers never see each other's tables). The test sets data up and reads it
back with the drivers directly, not through adgen."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tests.postgres import Server

PASSWORD_ENV = "ADGEN_TEST_PGPASSWORD"
"""The session's PostgreSQL password: campaigns in tests name it as ``${ADGEN_TEST_PGPASSWORD}``."""


@dataclass(frozen=True)
class Database:
    """``url`` is what a campaign writes (no secret in it); ``direct`` what the test's own
    connections use."""

    kind: str
    url: str
    direct: str

    @classmethod
    def duckdb(cls, path: Path) -> Database:
        return cls("duckdb", f"duckdb:///{path}", str(path))

    @classmethod
    @contextlib.contextmanager
    def postgres_schema(cls, server: Server) -> Iterator[Database]:
        """A new schema in the session's server, its URL's search path; dropped afterwards."""
        schema = f"t_{uuid.uuid4().hex[:12]}"
        server.psql(f"CREATE SCHEMA {schema}")
        options = f"?options=-csearch_path%3D{schema}"
        try:
            yield cls("postgresql", server.url(password=f"${{{PASSWORD_ENV}}}") + options,
                      server.url(password=server.password) + options)
        finally:
            server.psql(f"DROP SCHEMA {schema} CASCADE")

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        if self.kind == "duckdb":
            import duckdb

            embedded = duckdb.connect(self.direct)  # closed at once: adgen opens it next
            try:
                yield embedded
            finally:
                embedded.close()
        else:
            import sqlalchemy as sa

            engine = sa.create_engine(self.direct, poolclass=sa.pool.NullPool)
            try:
                with engine.begin() as server:
                    yield server
            finally:
                engine.dispose()

    def execute(self, *statements: str) -> None:
        with self._connection() as connection:
            for statement in statements:
                if self.kind == "duckdb":
                    connection.execute(statement)
                else:
                    connection.exec_driver_sql(statement)

    def frame(self, query: str) -> pd.DataFrame:
        with self._connection() as connection:
            if self.kind == "duckdb":
                return connection.sql(query).df()
            return pd.read_sql_query(query, connection)

    def load(self, table: str, frame: pd.DataFrame) -> None:
        """A new table holding ``frame``."""
        with self._connection() as connection:
            if self.kind == "duckdb":
                connection.register("incoming", frame)
                connection.execute(f"CREATE TABLE {table} AS SELECT * FROM incoming")
            else:
                frame.to_sql(table, connection, index=False)


def password_in_environment(server: Server) -> None:
    os.environ[PASSWORD_ENV] = server.password
