"""Textual SQL built once per distinct statement, and a lean way to run it on the hot paths."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import psycopg2
from sqlalchemy import Connection, Engine, TextClause, text
from sqlalchemy.dialects.postgresql import psycopg2 as pg_psycopg2
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound
from sqlalchemy.orm import Session

#: A row from `run`: a named tuple (attribute and index access, like SQLAlchemy's Row).
Record = Any

#: One SQL statement with its parameters, for `run_script` (several in one round trip).
Statement = tuple[str, dict[str, Any]]

#: What the purchase path's statements run in: an ORM session's transaction, or a bare
#: connection's (`uow.connection_unit_of_work`, the purchase itself). Both take `execute` of a
#: text statement and have `info`, which is all these functions use besides `run`.
Tx = Session | Connection

_DIALECT = pg_psycopg2.dialect()


@lru_cache(maxsize=2048)
def sql(statement: str) -> TextClause:
    """`text(statement)`, parsed once: building a TextClause scans the string for bind names on
    every call (about 0.1 ms), which the hot paths (a purchase runs a dozen statements) repeat
    for the same few strings. TextClause is immutable, so one object serves every thread."""
    return text(statement)


@lru_cache(maxsize=1024)
def _record_type(names: tuple[str, ...]) -> Any:
    """A named-tuple type for these column names (a repeated or odd name becomes `_1`…)."""
    return namedtuple("Record", names, rename=True)


@lru_cache(maxsize=2048)
def _driver_sql(statement: str) -> str:
    """The statement as psycopg2 takes it (`:name` → `%(name)s`, `%` → `%%`), compiled by
    SQLAlchemy's own psycopg2 dialect: the very string `session.execute` would send."""
    return str(sql(statement).compile(dialect=_DIALECT))


class Rows:
    """What a statement returned: the part of SQLAlchemy's Result the hot paths use."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Record], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def all(self) -> list[Record]:
        """Every row."""
        return self._rows

    def first(self) -> Record | None:
        """The first row, or None."""
        return self._rows[0] if self._rows else None

    def one(self) -> Record:
        """The only row; raises as SQLAlchemy's Result.one does otherwise."""
        if not self._rows:
            raise NoResultFound("No row was found when one was required")
        if len(self._rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0]

    def scalar(self) -> Any:
        """The first column of the first row, or None."""
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        """The first column of the only row."""
        return self.one()[0]

    def scalars(self) -> list[Any]:
        """The first column of every row."""
        return [row[0] for row in self._rows]


_CONNECTION = "quickcart.sql.connection"  # key in Session.info


def _connection(session: Session) -> Connection:
    """The session's connection for its current transaction, looked up once per transaction:
    `Session.connection()` walks the transaction state on every call (a twentieth of an
    orders worker's CPU at a dozen statements a purchase)."""
    transaction = session.get_transaction()
    cached = session.info.get(_CONNECTION)
    if cached is not None and transaction is not None and cached[0] is transaction \
            and transaction.is_active:
        return cached[1]
    conn = session.connection()
    session.info[_CONNECTION] = (session.get_transaction(), conn)
    return conn


def run(target: Session | Connection, statement: str,
        params: Mapping[str, Any] | None = None) -> Rows:
    """Run one statement in `target`'s transaction straight on its psycopg2 connection.

    The same SQL, parameters, transaction and errors as `target.execute(sql(statement))`, at
    about a quarter of the CPU: SQLAlchemy's execution context and result objects cost some
    70 µs a statement, which the purchase path (a dozen statements, many purchases a second)
    pays in full. Errors are raised as SQLAlchemy's exceptions (IntegrityError,
    OperationalError, …), and a lost connection is invalidated as SQLAlchemy would, so callers
    and the retry policy see no difference. Engine cursor events still fire, for observers."""
    conn = _connection(target) if isinstance(target, Session) else target
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    # Observers (statement counters, tracing) see every statement, as SQLAlchemy checks it.
    observed = conn if conn._has_events or conn.engine._has_events else None
    return _execute(dbapi_conn, statement, params, conn.dialect, conn.invalidate, observed)


def _execute(dbapi_conn: Any, statement: str, params: Mapping[str, Any] | None,
             dialect: Any, invalidate: Any, observed: Connection | None) -> Rows:
    driver_sql = _driver_sql(statement)
    bound = dict(params) if params else {}
    cursor = dbapi_conn.cursor()
    try:
        if observed is not None:
            observed.dispatch.before_cursor_execute(observed, cursor, driver_sql, bound, None,
                                                    False)
        cursor.execute(driver_sql, bound)
        rows: list[Record] = []
        if cursor.description is not None:
            make = _record_type(tuple(column[0] for column in cursor.description))._make
            rows = [make(row) for row in cursor.fetchall()]
        if observed is not None:
            observed.dispatch.after_cursor_execute(observed, cursor, driver_sql, bound, None,
                                                   False)
        return Rows(rows, cursor.rowcount)
    except psycopg2.Error as exc:
        lost = dialect.is_disconnect(exc, dbapi_conn, cursor)
        if lost:
            invalidate(exc)
        raise DBAPIError.instance(driver_sql, bound, exc, psycopg2.Error,
                                  connection_invalidated=lost, dialect=dialect) from exc
    finally:
        cursor.close()


def run_script(target: Session | Connection, statements: Sequence[Statement]) -> Rows:
    """Run several statements, in order, in `target`'s transaction in one round trip; returns
    what the last one returned.

    PostgreSQL runs a `;`-separated query statement by statement, each with a fresh snapshot
    in READ COMMITTED (so a read after a lock sees what committed while it waited), and stops
    at the first error, which fails the transaction as a single statement would. The
    statements share one set of parameter names: a name used twice must carry one value."""
    params: dict[str, Any] = {}
    for _, own in statements:
        for name, value in own.items():
            if name in params and params[name] is not value and params[name] != value:
                raise ValueError(f"parameter :{name} has two values in one script")
            params[name] = value
    return run(target, "; ".join(statement for statement, _ in statements), params)


def run_alone(engine: Engine, statement: str, params: Mapping[str, Any] | None = None) -> Rows:
    """Run `statement` (one, or several `;`-separated) as a transaction of its own in a single
    round trip: PostgreSQL runs a multi-statement query outside a transaction block as one
    implicit transaction (SET LOCAL holds in it), so the BEGIN and COMMIT round trips go.

    psycopg2's own autocommit flag is flipped for the call, not SQLAlchemy's AUTOCOMMIT
    isolation level: resetting that on check-in costs a `SET default_transaction_isolation`
    round trip and turns later BEGINs into `BEGIN ISOLATION LEVEL …`. The connection comes
    straight from the pool, without a SQLAlchemy Connection around it (a third of the call's
    CPU), unless the engine has cursor-event listeners to tell."""
    if engine._has_events:
        with engine.connect() as conn:
            return _autocommitted(conn.connection.dbapi_connection, lambda: run(
                conn, statement, params))
    pooled = engine.raw_connection()
    try:
        dbapi_conn = pooled.dbapi_connection
        return _autocommitted(dbapi_conn, lambda: _execute(
            dbapi_conn, statement, params, engine.dialect, pooled.invalidate, None))
    finally:
        pooled.close()


def _autocommitted(dbapi_conn: Any, call: Callable[[], Rows]) -> Rows:
    assert dbapi_conn is not None
    dbapi_conn.autocommit = True
    try:
        return call()
    finally:
        if not dbapi_conn.closed:
            dbapi_conn.autocommit = False
