"""Small statements run straight on the driver's cursor, compiled once.

Public API: `Direct` (prepare, rows, run, run_all), `Prepared`.

A mailbox catching up runs about thirteen small statements per message. For each one,
SQLAlchemy's execute machinery (cache lookup, parameter processing, result set-up,
events) costs several times what SQLite itself does. `Direct` compiles a statement
once for the dialect, with the bind processors of its column types (our UTC datetimes
among them) and the scalar Python-side column defaults an INSERT would fill in, and
then runs it on the transaction's own DBAPI cursor. Errors come back as SQLAlchemy's
exceptions (`IntegrityError`, `OperationalError`), as from `Connection.execute`, with
the parameters hidden: they hold addresses and subjects.

Only statements whose parameters and results need no more than that are prepared:
no expanding IN lists; result columns are converted by their types' result processors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

_MISSING = object()


@dataclass(frozen=True)
class Prepared:
    """A statement's SQL for one dialect and how to turn named values into its parameters."""

    sql: str
    names: tuple[str, ...]
    """Bind names, in the order of the statement's positional parameters."""
    processors: tuple[Callable[[Any], Any] | None, ...]
    defaults: Mapping[str, Any]
    """Values for binds a caller may leave out: literals and scalar column defaults."""
    results: tuple[Callable[[Any], Any] | None, ...]
    """Converters of the result columns (SQLite's datetime text to an aware UTC time)."""

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        out = []
        for name, process in zip(self.names, self.processors, strict=True):
            value = values.get(name, _MISSING)
            if value is _MISSING:
                value = self.defaults[name]
            out.append(value if process is None or value is None else process(value))
        return tuple(out)


class Direct:
    """Prepared statements for one engine's dialect, whose parameters must be positional
    (SQLite's `?`; PostgreSQL's `%s`, as `store.engine` sets it)."""

    def __init__(self, dialect: Dialect) -> None:
        if not dialect.positional:
            raise ValueError(f"{dialect.name} does not take positional parameters")
        self.dialect = dialect
        self._prepared: dict[tuple[ClauseElement, tuple[str, ...]], Prepared] = {}

    def prepare(self, statement: ClauseElement, keys: Sequence[str] = ()) -> Prepared:
        """`statement` compiled for this dialect; for an INSERT, `keys` are the columns the
        caller gives values for (the others get their defaults)."""
        cache_key = (statement, tuple(keys))
        found = self._prepared.get(cache_key)
        if found is not None:
            return found
        compiled = cast(SQLCompiler, statement.compile(dialect=self.dialect,
                                                       column_keys=list(keys) or None))
        names = tuple(compiled.positiontup or ())
        if unknown := set(keys) - set(names):
            raise ValueError(f"no such column: {', '.join(sorted(unknown))}")
        defaults: dict[str, Any] = {}
        for column in getattr(compiled, "insert_prefetch", ()):
            default = column.default
            if default is None or not default.is_scalar:
                raise ValueError(f"column {column.key} has a default that is not a value")
            defaults[column.key] = default.arg
        processors = []
        for name in names:
            bind = compiled.binds[name]
            if name not in defaults and bind.value is not None:
                defaults[name] = bind.value  # a literal in the statement, like "value + 1"
            processors.append(bind.type.dialect_impl(self.dialect).bind_processor(self.dialect))
        results = tuple(column.type.dialect_impl(self.dialect).result_processor(self.dialect, None)
                        for column in getattr(statement, "exported_columns", ()))
        prepared = Prepared(compiled.string, names, tuple(processors), defaults, results)
        self._prepared[cache_key] = prepared
        return prepared

    def rows(self, cursor: Any, prepared: Prepared,
             values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Execute and return the result rows, their values converted as SQLAlchemy would."""
        rows = self.run(cursor, prepared, values).fetchall()
        if not any(prepared.results):
            return list(rows)
        return [tuple(value if convert is None else convert(value)
                      for convert, value in zip(prepared.results, row, strict=True))
                for row in rows]

    def run(self, cursor: Any, prepared: Prepared, values: Mapping[str, Any]) -> Any:
        """Execute on a DBAPI cursor of this dialect's driver; return the cursor."""
        parameters = prepared.parameters(values)
        with self._errors(prepared.sql, parameters):
            return cursor.execute(prepared.sql, parameters)

    def run_all(self, cursor: Any,
                statements: Sequence[tuple[Prepared, tuple[Any, ...]]]) -> None:
        """Execute statements with their (processed) parameters, in order. On PostgreSQL
        they go in one pipeline (psycopg's pipeline mode): one round trip for all, the
        first error raised at its end, where the transaction is then aborted."""
        if self.dialect.driver != "psycopg":
            for prepared, parameters in statements:
                with self._errors(prepared.sql, parameters):
                    cursor.execute(prepared.sql, parameters)
            return
        with self._errors(statements[0][0].sql, ()), cursor.connection.pipeline():
            for prepared, parameters in statements:
                cursor.execute(prepared.sql, parameters)

    @contextmanager
    def _errors(self, sql: str, parameters: tuple[Any, ...]) -> Iterator[None]:
        """The driver's errors as SQLAlchemy's exceptions, as `Connection.execute` raises
        them, with the parameters hidden."""
        dbapi = self.dialect.loaded_dbapi
        try:
            yield
        except dbapi.Error as exc:
            raise DBAPIError.instance(sql, parameters, exc, dbapi.Error,
                                      hide_parameters=True, dialect=self.dialect) from exc
