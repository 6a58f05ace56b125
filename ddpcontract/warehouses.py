"""The warehouse-type registry: for each type, the fields of its Airbyte destination configuration and of its
dbt profile, which of them are secret, and how the one becomes the other.

Django checks a warehouse's `airbyteConfig` with it, the proxy turns the stored configuration (or credentials
sent directly) into the dbt profile JSON with it, and the flow turns that JSON into a profiles.yml with it.
Adding a warehouse type is one `Warehouse` entry in `WAREHOUSES` (plus its tests).

The profile JSON, as the proxy writes it into the org's profile Secret and the flow reads it (docs/flows.md):

    {"profile_name": "acme", "target": "default", "type": "postgres", "schema": "analytics", "threads": 4,
     "credentials": {"host": "db.internal", "port": 5432, "user": "acme", "password": "…", "dbname": "warehouse"}}

Errors never quote a value: they name fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class WarehouseType(StrEnum):
    POSTGRES = "postgres"
    BIGQUERY = "bigquery"
    DUCKDB = "duckdb"
    SNOWFLAKE = "snowflake"


class WarehouseConfigError(ValueError):
    """A configuration breaks a warehouse type's rules. `missing` lists required fields that are absent; otherwise
    `field` is the field at fault and `problem` what is wrong with it (e.g. "must be a number")."""

    def __init__(self, *, missing: list[str] | None = None, field: str | None = None, problem: str = ""):
        self.missing = list(missing or [])
        self.field = field
        self.problem = problem
        super().__init__(f"lacks {', '.join(self.missing)}" if self.missing else f"{field} {problem}")


class UnknownWarehouseType(WarehouseConfigError):
    def __init__(self, wtype: Any):
        super().__init__(field="type", problem=f"{wtype!r} is not one of {', '.join(WarehouseType)}")
        self.wtype = wtype


@dataclass(frozen=True)
class Field:
    """One field of a configuration. `default` fills it in when it is left out (so it is not asked for);
    `kind` says how its value is taken: as given, as an integer, or as a JSON object (a JSON string is parsed)."""

    name: str
    required: bool = True
    secret: bool = False
    default: Any = None
    kind: str = "text"  # text | integer | object
    problem: str = ""  # what to say when a value cannot be taken as `kind`


_INTEGER = "must be a number"
_SERVICE_ACCOUNT = "must be the service-account JSON (an object)"


def _present(value: Any) -> bool:
    return value not in (None, "")


def _missing(config: Mapping[str, Any], fields: tuple[Field, ...], *, with_defaults: bool) -> list[str]:
    return [
        spec.name
        for spec in fields
        if spec.required and not _present(config.get(spec.name)) and (with_defaults or spec.default is None)
    ]


def _coerce(spec: Field, value: Any) -> Any:
    if value is None:
        return value
    if spec.kind == "integer":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise WarehouseConfigError(field=spec.name, problem=spec.problem or _INTEGER) from None
    if spec.kind == "object":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if not isinstance(value, dict):
            raise WarehouseConfigError(field=spec.name, problem=spec.problem or "must be a JSON object")
    return value


@dataclass(frozen=True)
class Warehouse:
    """One warehouse type.

    - `destination`: the name of Airbyte's destination definition for it;
    - `destination_fields`: what its Airbyte destination configuration (a warehouse's `airbyteConfig`) must have;
    - `profile_fields`: the dbt profile's credentials (`fixed` values are set whatever the caller sends);
    - `from_destination`: the profile credentials read from a destination configuration;
    - `aliases`: other spellings of profile fields that callers may send (e.g. Airbyte's `username`);
    - `location_field`: the destination field holding the dataset location, where the type has one;
    - `from_credentials`: credentials sent in another shape than the profile's (None: they are in its shape);
    - `one_of`: profile fields of which at least one must be set.
    """

    wtype: WarehouseType
    label: str
    destination: str
    destination_fields: tuple[Field, ...]
    profile_fields: tuple[Field, ...]
    from_destination: Callable[[dict[str, Any]], dict[str, Any]]
    aliases: Mapping[str, str] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    location_field: str | None = None
    from_credentials: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
    one_of: tuple[str, ...] = ()  # profile fields of which at least one is needed (e.g. a password or a key)

    # -------------------------------------------------------------- the Airbyte destination configuration

    def check_destination(self, config: Mapping[str, Any]) -> None:
        """Refuses a destination configuration without what the warehouse needs (missing first, then values)."""
        missing = _missing(config, self.destination_fields, with_defaults=False)
        if missing:
            raise WarehouseConfigError(missing=missing)
        for spec in self.destination_fields:
            _coerce(spec, config.get(spec.name))
        self.profile_credentials(config)

    def location(self, config: Mapping[str, Any]) -> str | None:
        return (config.get(self.location_field) or None) if self.location_field else None

    def profile_credentials(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The dbt profile credentials held in a destination configuration (only what dbt needs)."""
        missing = _missing(config, self.destination_fields, with_defaults=False)
        if missing:
            raise WarehouseConfigError(missing=missing)
        credentials = self.from_destination(dict(config))
        if self.one_of and not any(_present(credentials.get(name)) for name in self.one_of):
            # in the destination configuration they sit under `credentials` (Airbyte's authorization method)
            raise WarehouseConfigError(field="credentials", problem=f"needs a {' or a '.join(self.one_of)}")
        return self.complete_credentials(credentials, location=self.location(config))

    # -------------------------------------------------------------- the dbt profile

    def canonical_credentials(self, credentials: Mapping[str, Any]) -> dict[str, Any]:
        """Credentials sent directly, in the profile's spelling."""
        if self.from_credentials is not None:
            converted = self.from_credentials(dict(credentials))
            if converted is not None:
                return converted
        return {self.aliases.get(key, key): value for key, value in credentials.items()}

    def complete_credentials(self, credentials: Mapping[str, Any], *, location: str | None = None) -> dict[str, Any]:
        """Credentials ready for the profile JSON: defaults and fixed values filled in, values taken as their
        kind; the location (if the type has one) set when given."""
        missing = _missing(credentials, self.profile_fields, with_defaults=False)
        missing = [name for name in missing if name not in self.fixed]
        if missing:
            raise WarehouseConfigError(missing=missing)
        self._check_one_of(credentials)
        completed = dict(credentials)
        for spec in self.profile_fields:
            if not _present(completed.get(spec.name)) and spec.default is not None:
                completed[spec.name] = spec.default
            if spec.name in completed:
                completed[spec.name] = _coerce(spec, completed[spec.name])
        completed.update(self.fixed)
        if location and self.location_field:
            completed["location"] = location
        return completed

    def target_extras(self, credentials: Mapping[str, Any]) -> dict[str, Any]:
        """The profile target's fields besides type, schema and threads, from the profile JSON's credentials:
        every required field present, values taken as their kind, unset ones left out."""
        missing = _missing(credentials, self.profile_fields, with_defaults=True)
        if missing:
            raise WarehouseConfigError(missing=missing)
        self._check_one_of(credentials)
        extras = {key: value for key, value in credentials.items() if value is not None}
        for spec in self.profile_fields:
            if spec.name in extras:
                extras[spec.name] = _coerce(spec, extras[spec.name])
        return extras

    def _check_one_of(self, credentials: Mapping[str, Any]) -> None:
        if self.one_of and not any(_present(credentials.get(name)) for name in self.one_of):
            raise WarehouseConfigError(field=" or ".join(self.one_of), problem="is needed")

    @property
    def secret_fields(self) -> frozenset[str]:
        return frozenset(spec.name for spec in (*self.destination_fields, *self.profile_fields) if spec.secret)


# ------------------------------------------------------------------------------------------ the types


def _postgres_from_destination(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "host": config["host"],
        "port": config.get("port"),
        "user": config["username"],
        "password": config["password"],
        "dbname": config["database"],
    }


POSTGRES = Warehouse(
    wtype=WarehouseType.POSTGRES,
    label="PostgreSQL",
    destination="postgres",
    destination_fields=(
        Field("host"),
        Field("port", required=False, kind="integer"),
        Field("database"),
        Field("username"),
        Field("password", secret=True),
    ),
    profile_fields=(
        Field("host"),
        Field("port", default=5432, kind="integer"),
        Field("user"),
        Field("password", secret=True),
        Field("dbname"),
    ),
    from_destination=_postgres_from_destination,
    aliases={"username": "user", "database": "dbname"},
)


DUCKDB = Warehouse(
    wtype=WarehouseType.DUCKDB,
    label="DuckDB",
    destination="duckdb",
    destination_fields=(Field("destination_path"),),
    profile_fields=(Field("path"),),
    from_destination=lambda config: {"path": config["destination_path"]},
)


def _bigquery_from_destination(config: dict[str, Any]) -> dict[str, Any]:
    return {"project": config["project_id"], "keyfile_json": config["credentials_json"]}


def _bigquery_from_credentials(credentials: dict[str, Any]) -> dict[str, Any] | None:
    if "keyfile_json" not in credentials and "private_key" in credentials:
        # the caller sent the service-account JSON itself
        return {"project": credentials.get("project_id"), "keyfile_json": credentials}
    return None


BIGQUERY = Warehouse(
    wtype=WarehouseType.BIGQUERY,
    label="BigQuery",
    destination="bigquery",
    destination_fields=(
        Field("project_id"),
        Field("dataset_id"),
        Field("credentials_json", secret=True, kind="object", problem=_SERVICE_ACCOUNT),
        Field("dataset_location", required=False),
    ),
    profile_fields=(
        Field("project"),
        Field("method"),
        Field("keyfile_json", secret=True, kind="object", problem=_SERVICE_ACCOUNT),
        Field("location", required=False),
    ),
    from_destination=_bigquery_from_destination,
    from_credentials=_bigquery_from_credentials,
    fixed={"method": "service-account-json"},
    location_field="dataset_location",
)


def _snowflake_account(host: str) -> str:
    """dbt's account identifier from Airbyte's host (`acct.us-east-2.aws.snowflakecomputing.com`)."""
    host = host.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    return host.removesuffix(".snowflakecomputing.com")


def _snowflake_from_destination(config: dict[str, Any]) -> dict[str, Any]:
    # Airbyte keeps the secret under `credentials` (password, or key pair); older versions had a top-level password
    auth = config.get("credentials") if isinstance(config.get("credentials"), dict) else {}
    credentials = {
        "account": _snowflake_account(str(config["host"])),
        "user": config["username"],
        "role": config.get("role"),
        "database": config["database"],
        "warehouse": config["warehouse"],
        "password": auth.get("password") or config.get("password"),
        "private_key": auth.get("private_key"),
        "private_key_passphrase": auth.get("private_key_password"),
    }
    return {key: value for key, value in credentials.items() if _present(value)}


SNOWFLAKE = Warehouse(
    wtype=WarehouseType.SNOWFLAKE,
    label="Snowflake",
    destination="snowflake",
    destination_fields=(
        Field("host"),
        Field("role", required=False),
        Field("warehouse"),
        Field("database"),
        Field("username"),
        Field("credentials", required=False, secret=True, kind="object"),
    ),
    profile_fields=(
        Field("account"),
        Field("user"),
        Field("role", required=False),
        Field("database"),
        Field("warehouse"),
        Field("password", required=False, secret=True),
        Field("private_key", required=False, secret=True),
        Field("private_key_passphrase", required=False, secret=True),
    ),
    from_destination=_snowflake_from_destination,
    aliases={"username": "user"},
    one_of=("password", "private_key"),
)


WAREHOUSES: dict[WarehouseType, Warehouse] = {
    warehouse.wtype: warehouse for warehouse in (POSTGRES, BIGQUERY, DUCKDB, SNOWFLAKE)
}
WAREHOUSE_TYPES = sorted(wtype.value for wtype in WAREHOUSES)
# every field name that holds a secret in some warehouse's configuration or profile (for redaction)
SECRET_FIELDS = frozenset().union(*(warehouse.secret_fields for warehouse in WAREHOUSES.values()))


def warehouse_for(wtype: Any) -> Warehouse:
    """The registry entry of `wtype`; UnknownWarehouseType if there is none."""
    try:
        return WAREHOUSES[WarehouseType(wtype)]
    except (ValueError, KeyError):
        raise UnknownWarehouseType(wtype) from None


# ------------------------------------------------------------------------------------------ the profile JSON


class ProfileError(ValueError):
    """The dbt profile JSON held in the Secret block does not follow the contract."""


@dataclass(frozen=True)
class ProfileTarget:
    """A profile JSON, checked: what a profiles.yml is made of."""

    profile_name: str
    target: str
    type: WarehouseType
    schema: str
    threads: int
    extras: dict[str, Any]

    def profiles_yml(self) -> dict[str, Any]:
        """The profiles.yml content (as a dict) for this target."""
        output = {**self.extras, "type": self.type.value, "schema": self.schema, "threads": self.threads}
        return {"config": {}, self.profile_name: {"target": self.target, "outputs": {self.target: output}}}


def profile_target(profile_json: dict | str) -> ProfileTarget:
    """Checks the profile JSON of the contract and returns its target; ProfileError names what is wrong."""
    if isinstance(profile_json, str):
        try:
            profile_json = json.loads(profile_json)
        except json.JSONDecodeError as error:
            raise ProfileError(f"the dbt profile secret is not valid JSON (line {error.lineno})") from None
    if not isinstance(profile_json, dict):
        raise ProfileError("the dbt profile secret must hold a JSON object")
    missing = [key for key in ("profile_name", "target", "type", "schema", "credentials") if not profile_json.get(key)]
    if missing:
        raise ProfileError(f"the dbt profile secret lacks {', '.join(missing)}")
    try:
        warehouse = warehouse_for(profile_json["type"])
    except UnknownWarehouseType:
        raise ProfileError(
            f"unsupported warehouse type {profile_json['type']!r}; expected one of {WAREHOUSE_TYPES}"
        ) from None
    credentials = profile_json["credentials"]
    if not isinstance(credentials, dict):
        raise ProfileError("the dbt profile secret's credentials must be a JSON object")
    try:
        extras = warehouse.target_extras(credentials)
    except WarehouseConfigError as error:
        if error.missing:
            raise ProfileError(f"the {warehouse.wtype} credentials lack {', '.join(error.missing)}") from None
        raise ProfileError(f"the {warehouse.wtype} credentials: {error.field} {error.problem}") from None
    return ProfileTarget(
        profile_name=profile_json["profile_name"],
        target=profile_json["target"],
        type=warehouse.wtype,
        schema=profile_json["schema"],
        threads=int(profile_json.get("threads") or 4),
        extras=extras,
    )
