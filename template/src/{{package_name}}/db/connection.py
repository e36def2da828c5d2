"""The URL the engine connects to, and asyncpg's connect arguments: TLS, timeouts
and the URL's libpq parameters, translated once per engine from the settings."""

import math
import ssl
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

from pydantic import SecretStr
from sqlalchemy.engine import URL, make_url

from ..settings import (
    Settings,
    SslMode,
)

DRIVER = "postgresql+asyncpg"
# URL parameters SQLAlchemy's asyncpg dialect reads itself. connect_arguments()
# translates every other one the settings accept, so those leave the URL.
DIALECT_PARAMETERS = ("host", "port", "prepared_statement_cache_size")
# SQLSTATE classes a server refuses a new connection with when it cannot serve
# one now: connection exceptions (08), insufficient resources (53: too many
# connections), operator intervention (57: starting up, shutting down) and

Value = TypeVar("Value")


def database_url(settings: Settings) -> URL:
    """The URL the engine connects to, with the password inside it.

    Built with URL.create, never by string formatting, so any character in a
    password works. Render it only with `hide_password=True` (the default of str()).
    """
    if settings.database_url is not None:
        url = make_url(settings.database_url.get_secret_value())
        parameters = settings.url_parameters
        # libpq's dbname, user and password parameters are the URL's own parts.
        return url.set(
            drivername=DRIVER,
            username=parameters.user or url.username,
            password=_secret(parameters.password) or url.password,
            database=parameters.dbname or url.database,
            query={
                name: value
                for name, value in url.query.items()
                if name in DIALECT_PARAMETERS
            },
        )
    password = settings.db_password.get_secret_value() if settings.db_password else None
    return URL.create(
        DRIVER,
        username=settings.db_user,
        password=password,
        host=settings.db_host,
        port=settings.db_port,
        database=settings.db_name,
    )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def ssl_argument(
    mode: SslMode,
    root_cert: Path | None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    key_password: str | None = None,
) -> ssl.SSLContext | str | bool:
    """libpq's sslmode as asyncpg's `ssl` argument, built once per engine."""
    if mode == "disable":
        return False
    if mode == "prefer":
        # asyncpg's own: TLS when the server offers it. (Settings refuse a client
        # certificate here: with a context of ours, TLS would be required.)
        return "prefer"
    # The system's CAs unless a root certificate is given.
    context = ssl.create_default_context(cafile=root_cert)
    if mode == "require":
        # Encrypt, but trust any certificate: libpq's meaning of "require".
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif mode == "verify-ca":
        context.check_hostname = False
    if client_cert is not None:
        # "" rather than None: with None, OpenSSL prompts on the terminal.
        context.load_cert_chain(client_cert, client_key, key_password or "")
    return context


def milliseconds(seconds: float) -> str:
    """A timeout as PostgreSQL reads it; rounded up, so only 0 turns it off."""
    return str(math.ceil(seconds * 1000))


def chosen(settings: Settings, field: str, from_url: Value | None) -> Value:
    """A DB_* variable when it is set, else the URL's parameter of the same
    meaning when it has one, else the variable's default."""
    if from_url is not None and field not in settings.model_fields_set:
        return from_url
    value: Value = getattr(settings, field)
    return value


def ssl_mode(settings: Settings) -> SslMode:
    """The TLS mode in force: DB_SSL_MODE, else the URL's sslmode, else prefer."""
    mode: SslMode | None = chosen(settings, "ssl_mode", settings.url_parameters.sslmode)
    return mode or "prefer"


# The timeouts sent at login: each server setting, the Settings field that
# holds it and the variable that sets that field.
TIMEOUTS = (
    ("statement_timeout", "statement_timeout", "DB_STATEMENT_TIMEOUT"),
    (
        "idle_in_transaction_session_timeout",
        "idle_in_transaction_timeout",
        "DB_IDLE_IN_TRANSACTION_TIMEOUT",
    ),
)


def server_settings(settings: Settings) -> dict[str, str]:
    """Settings each session starts with: the URL's options, the timeouts and
    the application name. Behind PgBouncer only the application name, the one
    setting it passes on (it refuses the others at login, or drops them if told
    to ignore them): there, set the timeouts on the role instead, which costs
    nothing per request (engine.check_role_timeouts compares them)."""
    url = settings.url_parameters
    application_name = chosen(
        settings,
        "application_name",
        url.application_name or url.fallback_application_name,
    )
    if settings.pgbouncer:
        return {"application_name": application_name}
    options = url.options or {}
    values = dict(options)
    for name, field, _variable in TIMEOUTS:
        if name not in options or field in settings.model_fields_set:
            values[name] = milliseconds(getattr(settings, field))
    values["application_name"] = application_name
    return values


def connect_arguments(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for asyncpg.connect(): the settings, and the URL's libpq
    parameters translated, computed once per engine."""
    url = settings.url_parameters
    arguments: dict[str, Any] = {
        "timeout": chosen(settings, "connect_timeout", url.connect_timeout),
        "ssl": ssl_argument(
            ssl_mode(settings),
            chosen(settings, "ssl_root_cert", url.sslrootcert),
            url.sslcert,
            url.sslkey,
            _secret(url.sslpassword),
        ),
        # Sent once when each connection opens, not per request (behind
        # PgBouncer only the application name: see server_settings).
        "server_settings": server_settings(settings),
    }
    optional = {
        "target_session_attrs": url.target_session_attrs,
        "krbsrvname": url.krbsrvname,
        "gsslib": url.gsslib,
    }
    arguments.update({name: v for name, v in optional.items() if v is not None})
    if settings.pgbouncer:
        arguments.update(PGBOUNCER_ARGUMENTS)
    return arguments


def unique_statement_name() -> str:
    return f"__asyncpg_{uuid4().hex}__"


# Behind PgBouncer in transaction pooling mode, consecutive transactions of one
# connection run on different server connections, which do not share prepared
# statements: so no statement is kept for reuse, by asyncpg or by SQLAlchemy,
# and each is prepared under a name no other can take (PgBouncer before 1.21
# does not track prepared statements at all).
# https://docs.sqlalchemy.org/en/20/dialects/postgresql.html#prepared-statement-name-with-pgbouncer
PGBOUNCER_ARGUMENTS: dict[str, Any] = {
    "statement_cache_size": 0,
    "prepared_statement_cache_size": 0,
    "prepared_statement_name_func": unique_statement_name,
}
