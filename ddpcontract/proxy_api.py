"""Request and response models of every proxy route: the contract between the proxy and its client on the
Django side (`ddpui/prefect_client`), which returns these objects. See docs/proxy.md.

The proxy adds the checks only Prefect can make (cron schedules) in `proxy/schemas.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID as _UUID

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from ddpcontract.flows import Entrypoint
from ddpcontract.states import StateType
from ddpcontract.tasks import GIT_PULL_SECRET_ENV_KEY, BlockName, DbtTaskConfig, NonEmpty, ShellTaskConfig
from ddpcontract.warehouses import WarehouseType

# the largest page offset either side accepts: far past any real list, and within the databases' integer
# types (Prefect answers 500 for an offset its database cannot hold)
MAX_OFFSET = 2**31 - 1


def _uuid_text(value: Any) -> str:
    try:
        return str(value if isinstance(value, _UUID) else _UUID(str(value)))
    except ValueError:
        raise ValueError("must be a UUID") from None


# A UUID, held as its canonical text (as in the JSON): ids compare equal to the strings Django stores.
Uuid = Annotated[str, BeforeValidator(_uuid_text), WithJsonSchema({"format": "uuid", "type": "string"})]

# Prefect refuses / % & > < in names; ? # and control characters would break the by-name URL it is read back with
OBJECT_NAME_MAX = 200
ObjectName = Annotated[
    str, StringConstraints(pattern=r"^[^/%&><?#\x00-\x1f\x7f]+$", min_length=1, max_length=OBJECT_NAME_MAX)
]
UNIQUE_SUFFIX_LENGTH = 33  # "-" and uuid4().hex
UNIQUE_BASE_MAX = OBJECT_NAME_MAX - UNIQUE_SUFFIX_LENGTH  # the suffix included, the name stays an ObjectName


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- blocks


class BlockRef(BaseModel):
    block_id: Uuid
    block_name: str


class BlockDeleted(BaseModel):
    block_id: Uuid
    deleted: bool = True


class AirbyteServerCreate(Request):
    blockName: BlockName
    serverHost: NonEmpty
    serverPort: StrictInt = Field(gt=0, lt=65536)
    username: str
    password: str
    apiVersion: str = "v1"
    useSsl: StrictBool = False


class AirbyteServerUpdate(Request):
    """Fields left out keep their saved value."""

    blockName: BlockName
    serverHost: NonEmpty | None = None
    serverPort: StrictInt | None = Field(default=None, gt=0, lt=65536)
    username: str | None = None
    password: str | None = None
    apiVersion: str | None = None
    useSsl: StrictBool | None = None


class AirbyteServerBlock(BlockRef):
    serverHost: str
    serverPort: int
    username: str
    apiVersion: str
    useSsl: bool


class DbtProfileName(Request):
    name: NonEmpty
    target: NonEmpty = "default"


CREDENTIALS_BLOCK_DESCRIPTION = (
    "Instead of `credentials`: the Secret block holding the warehouse's Airbyte destination configuration as "
    "JSON; the proxy reads it and derives the profile credentials"
)


class DbtCliProfileCreate(Request):
    """The credentials come either in the request or from the warehouse's credentials Secret block."""

    cli_profile_block_name: BlockName
    profile: DbtProfileName
    wtype: WarehouseType
    target_schema: NonEmpty
    credentials: dict[str, Any] | None = None
    credentials_block_name: BlockName | None = Field(default=None, description=CREDENTIALS_BLOCK_DESCRIPTION)
    bqlocation: str | None = None
    threads: StrictInt = Field(default=4, ge=1, le=64)

    @model_validator(mode="after")
    def _one_source_of_credentials(self):
        if (self.credentials is None) == (self.credentials_block_name is None):
            raise ValueError("send either credentials or credentials_block_name")
        return self


class DbtCliProfileUpdate(Request):
    """Fields left out keep their saved value; `credentials` is merged key by key into the saved ones, while
    `credentials_block_name` replaces them with those derived from that block."""

    cli_profile_block_name: BlockName
    profile: DbtProfileName | None = None
    wtype: WarehouseType | None = None
    target_schema: NonEmpty | None = None
    credentials: dict[str, Any] | None = None
    credentials_block_name: BlockName | None = Field(default=None, description=CREDENTIALS_BLOCK_DESCRIPTION)
    bqlocation: str | None = None
    threads: StrictInt | None = Field(default=None, ge=1, le=64)

    @model_validator(mode="after")
    def _at_most_one_source_of_credentials(self):
        if self.credentials is not None and self.credentials_block_name is not None:
            raise ValueError("send credentials or credentials_block_name, not both")
        return self


class DbtCliProfileBlock(BlockRef):
    profile_name: str
    target: str
    wtype: str
    target_schema: str
    threads: int
    bqlocation: str | None = None


class SecretWrite(Request):
    blockName: BlockName
    secret: str


# What Airbyte (and ddpui, after it) shows in place of a secret; sent back in a configuration, it means "keep the
# stored value" (as Airbyte's own update does).
SECRET_MASK = "**********"


class SecretMerge(Request):
    """A new JSON object for a Secret block holding one: it replaces the stored object, except that every value
    sent as SECRET_MASK (at any depth) keeps the stored value at that place."""

    blockName: BlockName
    secret: dict[str, Any] = Field(description=f"The new object; a value {SECRET_MASK!r} keeps the stored one")


class SecretMerged(BaseModel):
    block_id: Uuid
    block_name: str
    kept: list[str] = Field(description="Where the stored value was kept (dotted paths, list items by index)")


# ---------------------------------------------------------------- deployments


class DeploymentCreate(Request):
    deployment_name: ObjectName
    org_slug: NonEmpty
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="The flow's parameters, e.g. {'config': {...}}"
    )
    flow_name: ObjectName | None = Field(default=None, description="Defaults to the flow the entrypoint holds")
    cron: NonEmpty | None = None
    timezone: str | None = Field(default=None, description="IANA name; UTC when left out")
    work_pool_name: NonEmpty | None = None
    work_queue_name: NonEmpty | None = None
    entrypoint: Entrypoint = Entrypoint.PIPELINE
    description: str | None = None
    unique_suffix: bool = Field(
        default=False,
        description=(
            "Name the deployment deployment_name + '-' + 32 random hex digits (the answer gives the name). "
            "The name is then new by construction, so the proxy makes one Prefect call instead of first "
            "checking that no deployment of the flow has the name (which it must, left false: Prefect's "
            "create would overwrite one)"
        ),
    )

    @model_validator(mode="after")
    def _room_for_the_suffix(self):
        if self.unique_suffix and len(self.deployment_name) > UNIQUE_BASE_MAX:
            raise ValueError(
                f"deployment_name is at most {UNIQUE_BASE_MAX} characters with unique_suffix "
                f"(the suffix adds {UNIQUE_SUFFIX_LENGTH})"
            )
        return self


class DeploymentUpdate(Request):
    """`cron` left out keeps the schedule; `cron: null` removes it. `timezone` alone re-times the schedule."""

    parameters: dict[str, Any] | None = None
    cron: NonEmpty | None = None
    timezone: str | None = None


class DeploymentEntrypointUpdate(Request):
    entrypoint: Entrypoint
    parameters: dict[str, Any] | None = Field(
        default=None, description="Replaces the parameters in the same change (the two flows take different ones)"
    )


class DeploymentRef(BaseModel):
    deployment_id: Uuid
    name: str


class Deployment(BaseModel):
    deployment_id: Uuid
    name: str
    flow_id: Uuid
    tags: list[str]
    parameters: dict[str, Any]
    cron: str | None
    timezone: str | None
    is_schedule_active: bool
    entrypoint: str | None
    work_pool_name: str | None
    work_queue_name: str | None


class DeploymentFilter(Request):
    org_slug: NonEmpty | None = None
    deployment_ids: list[Uuid] | None = None


class DeploymentList(BaseModel):
    deployments: list[Deployment]


class DeploymentIds(Request):
    deployment_ids: list[Uuid] = Field(max_length=10000)


class ScheduleStates(BaseModel):
    """Of the deployments asked about: those paused and those Prefect does not have; every other one exists
    with its schedule active. Sized by the exceptions, so a list of a thousand pipelines stays cheap."""

    paused: list[Uuid]
    missing: list[Uuid]


class DeploymentDeleted(BaseModel):
    deployment_id: Uuid
    deleted: bool = True


class ScheduleState(BaseModel):
    deployment_id: Uuid
    is_schedule_active: bool


# ---------------------------------------------------------------- flow runs


class FlowRunCreate(Request):
    parameters: dict[str, Any] | None = Field(
        default=None, description="Top-level keys override the deployment's parameters for this run"
    )


class FlowRunRef(BaseModel):
    flow_run_id: Uuid
    name: str


class FlowRun(BaseModel):
    flow_run_id: Uuid
    name: str
    deployment_id: Uuid | None
    state_type: str | None
    state_name: str | None
    state_message: str | None
    start_time: datetime | None
    end_time: datetime | None
    expected_start_time: datetime | None
    total_run_time: float
    parameters: dict[str, Any] | None = None
    task_results: list[dict[str, Any]] | None = None


class FlowRunFilter(Request):
    flow_run_ids: list[Uuid] | None = Field(default=None, max_length=200, description="Only these runs")
    deployment_ids: list[Uuid] | None = None
    state_types: list[StateType] | None = None
    start_after: datetime | None = Field(default=None, description="Runs that started at or after this time")
    start_before: datetime | None = Field(default=None, description="Runs that started at or before this time")
    include_future: StrictBool = Field(
        default=False, description="Include runs scheduled for later than now (e.g. the next cron runs)"
    )
    limit_per_deployment: StrictInt | None = Field(default=None, ge=1, le=200)
    limit: StrictInt = Field(default=100, ge=1, le=200)
    include_parameters: StrictBool = False
    include_task_results: StrictBool = False

    @model_validator(mode="after")
    def _per_deployment_needs_ids(self):
        if self.limit_per_deployment is not None and not self.deployment_ids:
            raise ValueError("limit_per_deployment needs deployment_ids")
        return self


class FlowRunList(BaseModel):
    flow_runs: list[FlowRun]


class LogLine(BaseModel):
    timestamp: datetime
    level: int
    level_name: str
    message: str
    flow_run_id: Uuid | None
    task_run_id: Uuid | None = None


class FlowRunLogs(BaseModel):
    logs: list[LogLine]
    offset: int
    next_offset: int | None = Field(description="Where to continue; null once the run is finished and all read")


class FlowRunStateChange(BaseModel):
    flow_run_id: Uuid
    state_type: str
    state_name: str


# ---------------------------------------------------------------- ad-hoc task runs


class DbtTaskRun(Request):
    org_slug: NonEmpty
    task: DbtTaskConfig


class ShellTaskRun(Request):
    org_slug: NonEmpty
    task: ShellTaskConfig


# ---------------------------------------------------------------- health


class Health(BaseModel):
    prefect: Literal["ok"]
    prefect_version: str


class ErrorBody(BaseModel):
    detail: str


# ---------------------------------------------------------------- automations


Change = Literal["created", "updated", "unchanged"]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,100}$")]


class FlowRunNotificationsWrite(Request):
    name: BlockName
    url: AnyHttpUrl
    secret_header_name: HeaderName
    secret: Annotated[str, StringConstraints(min_length=1)]


class FlowRunNotifications(BaseModel):
    """What is set up, never the secret."""

    name: str
    automation_id: Uuid
    enabled: bool
    events: list[str]
    match: dict[str, str | list[str]] = Field(
        default_factory=dict, description="The trigger's resource labels: state changes only, never heartbeats"
    )
    block_id: Uuid | None
    block_name: str | None
    url: str | None
    secret_header_name: str | None


class FlowRunNotificationsWritten(FlowRunNotifications):
    block_change: Change
    automation_change: Change
    duplicates_removed: int
    legacy_block_removed: bool = Field(
        default=False, description="An earlier version's Custom Webhook notification block of this name was deleted"
    )


class FlowRunNotificationsDeleted(BaseModel):
    name: str
    automations_deleted: int
    block_deleted: bool


# ---------------------------------------------------------------- outgoing webhooks


class OutgoingWebhookSend(Request):
    """POST a JSON message to the URL held by a Secret block (an org's alert webhook): the URL never leaves
    Prefect and the proxy, so Django never holds it."""

    blockName: BlockName
    payload: dict[str, Any]
    timeoutSeconds: float = Field(default=5, ge=0.5, le=30, description="For the whole request to the URL")


class OutgoingWebhookSent(BaseModel):
    delivered: bool = Field(description="The URL answered 2xx")
    statusCode: int | None = Field(description="The URL's HTTP status; null when it did not answer")
    error: str | None = Field(description="Why it was not delivered, without the URL")


# ---------------------------------------------------------------- block migration


class LegacyBlocksDescribe(Request):
    block_names: list[BlockName] = Field(min_length=1, max_length=1000)


class LegacyDbtProfile(BaseModel):
    """What a legacy dbt CLI profile is, never its credentials."""

    block_id: Uuid | None = Field(default=None, description="The named dbt CLI Profile block referenced, if any")
    block_name: str | None = None
    profile_name: str
    target: str
    wtype: str
    target_schema: str
    threads: int | None = None


class LegacyBlock(BaseModel):
    block_id: Uuid
    block_name: str
    block_type: str = Field(description="Prefect's block type name, e.g. 'dbt Core Operation'")
    block_type_slug: str
    connection_id: str | None = None
    airbyte_server_block: str | None = None
    max_wait_seconds: int | None = None
    commands: list[str] | None = None
    working_dir: str | None = None
    project_dir: str | None = None
    profiles_dir: str | None = None
    env_keys: list[str] | None = Field(default=None, description="The names of the block's environment variables")
    git_pull_url_block: str | None = Field(default=None, description=f"The value of env['{GIT_PULL_SECRET_ENV_KEY}']")
    dbt_cli_profile: LegacyDbtProfile | None = None


class LegacyBlockList(BaseModel):
    blocks: list[LegacyBlock]
    missing: list[str] = Field(description="Names asked for that no (non-anonymous) block document has")


class DbtCliProfileFromDbtCore(Request):
    dbtcore_block_name: BlockName
    cli_profile_block_name: BlockName
    profile: DbtProfileName | None = Field(default=None, description="Overrides the legacy profile's name and target")
    target_schema: NonEmpty | None = Field(default=None, description="Overrides the legacy profile's schema")
