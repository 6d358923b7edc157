"""SQL databases: a query read in Arrow record batches, a table upserted in one transaction.

A database is named by a SQLAlchemy URL:

- ``duckdb:///path.db`` is DuckDB, embedded (no server), read by DuckDB itself in Arrow batches
  (``duckdb:////abs/path.db`` for an absolute path). ``duckdb://`` is an empty in-memory
  database, for queries over files: ``select * from 'exports/*.parquet'``. The URL's query
  parameters are DuckDB settings (``?threads=4``); relative file names in queries are looked
  up in ``file_search_path``, which a campaign sets to its own folder (:func:`resolve_url`).
  Sources are opened read-only.
- any other URL goes through SQLAlchemy 2 (``pip install 'adgen[sql]'``): a server-side cursor
  read :data:`BATCH_ROWS` rows at a time, each chunk made an Arrow batch. ``postgresql://`` is
  PostgreSQL with psycopg 3 (its own named cursor, in a read-only transaction; upserts staged
  by ``COPY``); other databases need their SQLAlchemy dialect installed (SQLAlchemy's
  ``stream_results``).

So a source's rows sit in memory once, as Arrow batches, until they become the frame
(:func:`read_frame`, which frees each column as it converts it).

Secrets never sit in a campaign: :func:`check_url` refuses a URL with a password written out.
``${NAME}`` takes a value from the environment when the database is opened (percent-encoded
inside the user and password), and drivers read their own variables (``PGPASSWORD``,
``PGPASSFILE``, ``PGSERVICE`` for PostgreSQL). Messages show the URL as written.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv

BATCH_ROWS = 65_536
"""Rows fetched per round trip, and per Arrow batch."""

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# the user and password as SQLAlchemy's URL parser reads them (a password may hold '/' or ':')
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
                       r"(?:(?P<user>[^:/]*)(?::(?P<password>[^@]*))?@)?")
_SECRET_PARAMS = {"password", "passwd", "pwd"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$")
TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$")
"""A table adgen writes: lower-case, so every database sees the same name unquoted."""

NO_PASSWORD = ("holds a password written out; secrets come from the environment: write "
               "${PGPASSWORD} (any variable name) in its place, or leave it out and set the "
               "driver's own variable (PGPASSWORD or ~/.pgpass for PostgreSQL)")


class SqlError(Exception):
    """A database could not be opened or reached (``unavailable``), or a statement failed.
    ``reason`` is one line: the driver's first."""

    def __init__(self, reason: str, *, unavailable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unavailable = unavailable


def check_url(url: str) -> str:
    """``url`` if it is a database URL whose password, if any, is a ``${NAME}`` reference;
    else ValueError saying what to write instead (the message never repeats the URL)."""
    match = _USERINFO.match(url)
    if match is None:
        raise ValueError("not a database URL: give a SQLAlchemy URL such as duckdb:///crm.db "
                         "or postgresql://user@host:5432/crm")
    if "${" in _VAR.sub("", url):
        raise ValueError("'${' must start a ${NAME} reference to an environment variable "
                         "(letters, digits and '_')")
    password = match["password"]
    if password and not _VAR.fullmatch(password):
        raise ValueError(f"the URL {NO_PASSWORD}")
    query = url.partition("?")[2]
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.lower() in _SECRET_PARAMS and value and not _VAR.fullmatch(value):
            raise ValueError(f"the URL's {key}= parameter {NO_PASSWORD}")
    return url


def check_table_name(name: str) -> str:
    """``name`` (``table`` or ``schema.table``) if it is a plain SQL name; else ValueError."""
    if not _NAME.match(name):
        raise ValueError(f"{name[:80]!r} is not a table name: letters, digits and '_', "
                         "optionally schema.table (for anything else, give a query)")
    return name


def expand(url: str) -> str:
    """``url`` with each ``${NAME}`` replaced by the environment variable's value
    (percent-encoded in the user and password); SqlError naming a variable that is not set."""
    match = _USERINFO.match(url)
    userinfo_end = match.end() if match else 0

    def value(found: re.Match[str]) -> str:
        name = found[1]
        if name not in os.environ:
            raise SqlError(f"the environment variable {name} is not set (the URL reads "
                           f"${{{name}}}); set it before running adgen", unavailable=True)
        text = os.environ[name]
        return quote(text, safe="") if found.start() < userinfo_end else text

    return _VAR.sub(value, url)


def resolve_url(url: str, base: Path) -> str:
    """A DuckDB URL with its database file made absolute against ``base``, and ``base`` as
    the ``file_search_path`` of its queries unless the URL sets one; other URLs unchanged."""
    if not url.startswith("duckdb://"):
        return url
    path, _, query = url.removeprefix("duckdb://").removeprefix("/").partition("?")
    if path and path != ":memory:" and not path.startswith(("/", "${")):
        path = os.path.normpath(base / path)
    settings = [key for key, _ in parse_qsl(query, keep_blank_values=True)]
    if "file_search_path" not in settings:
        query = "&".join(filter(None, [query, f"file_search_path={quote(str(base), safe='')}"]))
    return f"duckdb:///{path}" + (f"?{query}" if query else "")


def shorten(sql: str, limit: int = 100) -> str:
    """A query on one line, cut to ``limit`` characters, for messages."""
    line = " ".join(sql.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def select_table(table: str) -> str:
    """The query that reads a whole table (its name checked by :func:`check_table_name`)."""
    return f"SELECT * FROM {check_table_name(table)}"


class Database(ABC):
    """An open database: read a query in Arrow batches; upsert rows into a table."""

    @abstractmethod
    def batches(self, query: str) -> Iterator[pa.RecordBatch]:
        """The query's rows, :data:`BATCH_ROWS` at a time."""

    @abstractmethod
    def latest(self, table: str, column: str, where: tuple[str, str]) -> int | None:
        """``max(column)`` over the rows where ``where[0] = where[1]``; None when there are
        none or the table does not exist."""

    @abstractmethod
    def upsert(self, table: str, rows: pa.Table, key: Sequence[str]) -> None:
        """In one transaction: create ``table`` when it is missing (its columns typed from
        ``rows``' schema, ``key`` the primary key), then insert ``rows``, a row whose key is
        there replacing it."""


@contextlib.contextmanager
def open_database(url: str, *, write: bool = False) -> Iterator[Database]:
    """The database at ``url`` (``${NAME}`` expanded), read-only unless ``write``."""
    expanded = expand(url)
    if expanded.startswith("duckdb://"):
        with _DuckDB.connect(expanded, write=write) as database:
            yield database
    else:
        with _Alchemy.connect(expanded, write=write) as database:
            yield database


def read_table(url: str, query: str, *, text: Sequence[str] = ()) -> pa.Table:
    """Every row of ``query`` as one Arrow table: decimals as float64, dictionary columns
    decoded, UUIDs as text, each of the ``text`` columns present as text (ids stay text, as
    in CSV)."""
    with open_database(url) as database:
        batches = list(database.batches(query))
    if len({batch.schema for batch in batches}) > 1:  # a chunk of NULLs has its own types
        table = pa.concat_tables([pa.Table.from_batches([b]) for b in batches],
                                 promote_options="permissive")
    else:
        table = pa.Table.from_batches(batches)
    del batches
    for index, field in enumerate(table.schema):
        column = table.column(index)
        if field.name in text and not pa.types.is_string(field.type):
            column = pc.cast(column, pa.string())
        elif pa.types.is_decimal(field.type):
            column = pc.cast(column, pa.float64())
        elif pa.types.is_dictionary(field.type):
            column = pc.cast(column, field.type.value_type)
        elif pa.types.is_large_string(field.type):
            column = pc.cast(column, pa.string())
        elif isinstance(field.type, pa.ExtensionType):  # UUIDs: their text form
            column = pa.chunked_array([pa.array([None if v is None else str(v)
                                                 for v in chunk.to_pylist()], pa.string())
                                       for chunk in column.chunks], pa.string())
        else:
            continue
        table = table.set_column(index, pa.field(field.name, column.type), column)
    return table


def read_frame(url: str, query: str, *, text: Sequence[str] = ()) -> pd.DataFrame:
    """:func:`read_table` as a DataFrame, each Arrow column freed as it is converted."""
    table = read_table(url, query, text=text)
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    for name in text:
        if name in frame.columns:
            frame[name] = frame[name].astype("string")
    return frame


def _first_line(exc: BaseException) -> str:
    error = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _columns(rows: Sequence[Sequence[Any]], names: list[str]) -> pa.RecordBatch:
    """One Arrow batch from driver rows; a column Arrow cannot type (UUIDs, IP addresses,
    ranges) becomes text."""
    arrays = []
    for values in zip(*rows, strict=True) if rows else [()] * len(names):
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            arrays.append(pa.array([None if v is None else str(v) for v in values],
                                   pa.string()))
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _chunks(chunks: Iterable[Sequence[Sequence[Any]]], names: list[str]
            ) -> Iterator[pa.RecordBatch]:
    """Arrow batches of the driver's chunks of rows (one empty batch when there are none)."""
    empty = True
    for rows in chunks:
        empty = False
        yield _columns(rows, names)
    if empty:
        yield _columns([], names)


def _is_psycopg(driver: Any) -> bool:
    return type(driver).__module__.split(".")[0] == "psycopg"


def _psycopg_batches(driver: Any, query: str) -> Iterator[pa.RecordBatch]:
    """PostgreSQL through psycopg itself: a server-side cursor, its rows fetched BATCH_ROWS at
    a time, without SQLAlchemy's row objects."""
    import psycopg

    try:
        with driver.cursor(name="adgen_read") as cursor:
            cursor.execute(query)
            if cursor.description is None:
                raise SqlError("the statement returns no rows: give a SELECT query")
            names = [column.name for column in cursor.description]
            yield from _chunks(iter(lambda: cursor.fetchmany(BATCH_ROWS), []), names)
    except psycopg.Error as exc:
        raise SqlError(_first_line(exc),
                       unavailable=isinstance(exc, psycopg.OperationalError)) from None


class _DuckDB(Database):
    def __init__(self, connection: Any) -> None:
        self.connection = connection

    @classmethod
    @contextlib.contextmanager
    def connect(cls, url: str, *, write: bool) -> Iterator[_DuckDB]:
        import duckdb

        path, _, query = url.removeprefix("duckdb://").removeprefix("/").partition("?")
        config: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        memory = path in ("", ":memory:")
        try:
            connection = duckdb.connect(":memory:" if memory else path,
                                        read_only=not (write or memory), config=config)
        except duckdb.Error as exc:
            raise SqlError(_first_line(exc), unavailable=True) from None
        try:
            yield cls(connection)
        finally:
            connection.close()

    def batches(self, query: str) -> Iterator[pa.RecordBatch]:
        import duckdb

        try:
            relation = self.connection.sql(query)
            if relation is None:
                raise SqlError("the statement returns no rows: give a SELECT query")
            # duckdb >= 2 renamed fetch_arrow_reader
            open_reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
            reader = open_reader(BATCH_ROWS)
            empty = True
            for batch in reader:
                empty = False
                yield batch
            if empty:
                yield pa.RecordBatch.from_pylist([], schema=reader.schema)
        except duckdb.Error as exc:
            raise SqlError(_first_line(exc)) from None

    def latest(self, table: str, column: str, where: tuple[str, str]) -> int | None:
        import duckdb

        schema, _, name = table.rpartition(".")
        try:
            found = self.connection.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = ?",
                [name, schema or "main"]).fetchone()
            if not found or not found[0]:
                return None
            row = self.connection.execute(
                f"SELECT max({column}) FROM {table} WHERE {where[0]} = ?", [where[1]]).fetchone()
        except duckdb.Error as exc:
            raise SqlError(_first_line(exc)) from None
        return None if row is None or row[0] is None else int(row[0])

    def upsert(self, table: str, rows: pa.Table, key: Sequence[str]) -> None:
        import duckdb

        columns = ", ".join(f"{f.name} {_duck_type(f.type)}" + (" NOT NULL" if f.name in key
                                                                  else "") for f in rows.schema)
        try:
            self.connection.begin()
            self.connection.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns}, "
                                    f"PRIMARY KEY ({', '.join(key)}))")
            self.connection.register("adgen_rows", rows)
            self.connection.execute(_upsert_from("adgen_rows", table, rows.schema.names, key))
            self.connection.commit()
        except duckdb.Error as exc:
            self.connection.rollback()
            raise SqlError(_first_line(exc)) from None
        finally:
            self.connection.unregister("adgen_rows")


def _upsert_from(source: str, table: str, names: Sequence[str], key: Sequence[str]) -> str:
    """The statement that upserts every row of ``source`` into ``table``."""
    columns = ", ".join(names)
    updates = ", ".join(f"{n} = excluded.{n}" for n in names if n not in key)
    return (f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {source} "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}")


def _duck_type(kind: pa.DataType) -> str:
    if pa.types.is_boolean(kind):
        return "BOOLEAN"
    if pa.types.is_integer(kind):
        return "BIGINT" if kind.bit_width > 32 else "INTEGER"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMPTZ" if kind.tz else "TIMESTAMP"
    return "TEXT"


class _Alchemy(Database):
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    @classmethod
    @contextlib.contextmanager
    def connect(cls, url: str, *, write: bool) -> Iterator[_Alchemy]:
        try:
            import sqlalchemy as sa
            from sqlalchemy.pool import NullPool
        except ImportError:
            raise SqlError("this URL needs SQLAlchemy and a driver: pip install 'adgen[sql]'",
                           unavailable=True) from None
        if url.startswith("postgresql://"):  # psycopg 3 whatever SQLAlchemy's default
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        try:
            engine = sa.create_engine(url, poolclass=NullPool)
            if not write and engine.dialect.name == "postgresql":
                engine = engine.execution_options(postgresql_readonly=True)
        except (ImportError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
            raise SqlError(f"cannot use this URL: {_first_line(exc)} (is its SQLAlchemy "
                           "dialect and driver installed?)", unavailable=True) from None
        try:
            yield cls(engine)
        finally:
            engine.dispose()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        import sqlalchemy as sa

        try:
            connection = self.engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            raise SqlError(_first_line(exc), unavailable=True) from None
        with connection:
            try:
                yield connection
            except sa.exc.DBAPIError as exc:
                unavailable = isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
                raise SqlError(_first_line(exc), unavailable=unavailable) from None

    def batches(self, query: str) -> Iterator[pa.RecordBatch]:
        with self._connection() as connection:
            driver = connection.connection.driver_connection
            if _is_psycopg(driver):
                yield from _psycopg_batches(driver, query)
                return
            if self.engine.dialect.paramstyle in ("format", "pyformat"):
                query = query.replace("%", "%%")  # sent as written: no parameters in it
            result = connection.execution_options(stream_results=True).exec_driver_sql(query)
            if not result.returns_rows:
                raise SqlError("the statement returns no rows: give a SELECT query")
            yield from _chunks(result.partitions(BATCH_ROWS), list(result.keys()))

    def latest(self, table: str, column: str, where: tuple[str, str]) -> int | None:
        import sqlalchemy as sa

        schema, _, name = table.rpartition(".")
        with self._connection() as connection:
            if not sa.inspect(connection).has_table(name, schema=schema or None):
                return None
            target = sa.table(name, sa.column(column), sa.column(where[0]), schema=schema or None)
            value = connection.execute(sa.select(sa.func.max(target.c[column])).where(
                target.c[where[0]] == where[1])).scalar()
        return None if value is None else int(value)

    def upsert(self, table: str, rows: pa.Table, key: Sequence[str]) -> None:
        import sqlalchemy as sa

        dialect = self.engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):  # the dialects with ON CONFLICT
            raise SqlError(f"upserting into {dialect} is not supported: use PostgreSQL, "
                           "DuckDB or SQLite")
        insert = importlib.import_module(f"sqlalchemy.dialects.{dialect}").insert
        schema, _, name = table.rpartition(".")
        target = sa.Table(name, sa.MetaData(), *(
            sa.Column(f.name, _alchemy_type(f.type), primary_key=f.name in key,
                      nullable=f.name not in key) for f in rows.schema), schema=schema or None)
        statement = insert(target)
        statement = statement.on_conflict_do_update(
            index_elements=list(key),
            set_={n: statement.excluded[n] for n in rows.schema.names if n not in key})
        with self._connection() as connection, connection.begin():
            target.create(connection, checkfirst=True)
            driver = connection.connection.driver_connection
            if _is_psycopg(driver):  # COPY: many times the rate of inserts
                with driver.cursor() as cursor:
                    cursor.execute(f"CREATE TEMPORARY TABLE adgen_rows (LIKE {table}) "
                                   "ON COMMIT DROP")
                    with cursor.copy(f"COPY adgen_rows ({', '.join(rows.schema.names)}) "
                                     "FROM STDIN (FORMAT csv)") as copy:
                        for batch in rows.to_batches(max_chunksize=BATCH_ROWS):
                            text = io.BytesIO()  # Arrow writes NULL as an empty unquoted field
                            csv.write_csv(batch, text, csv.WriteOptions(include_header=False))
                            copy.write(text.getbuffer())
                    cursor.execute(_upsert_from("adgen_rows", table, rows.schema.names, key))
                return
            for batch in rows.to_batches(max_chunksize=10_000):
                connection.execute(statement, batch.to_pylist())


def _alchemy_type(kind: pa.DataType) -> Any:
    import sqlalchemy as sa

    if pa.types.is_boolean(kind):
        return sa.Boolean()
    if pa.types.is_integer(kind):
        return sa.BigInteger() if kind.bit_width > 32 else sa.Integer()
    if pa.types.is_timestamp(kind):
        return sa.DateTime(timezone=kind.tz is not None)
    return sa.Text()
