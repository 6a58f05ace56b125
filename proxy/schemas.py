"""The proxy's request and response models: the contract's (`ddpcontract.proxy_api`, shared with the Django
side's client), with the checks only Prefect can make added here (cron schedules and their time zones)."""

from __future__ import annotations

from prefect.client.schemas.schedules import CronSchedule
from pydantic import model_validator

from ddpcontract import proxy_api
from ddpcontract.proxy_api import (
    SECRET_MASK as SECRET_MASK,
)
from ddpcontract.proxy_api import (
    AirbyteServerBlock as AirbyteServerBlock,
)
from ddpcontract.proxy_api import (
    AirbyteServerCreate as AirbyteServerCreate,
)
from ddpcontract.proxy_api import (
    AirbyteServerUpdate as AirbyteServerUpdate,
)
from ddpcontract.proxy_api import (
    BlockDeleted as BlockDeleted,
)
from ddpcontract.proxy_api import (
    BlockRef as BlockRef,
)
from ddpcontract.proxy_api import (
    Change as Change,
)
from ddpcontract.proxy_api import (
    DbtCliProfileBlock as DbtCliProfileBlock,
)
from ddpcontract.proxy_api import (
    DbtCliProfileCreate as DbtCliProfileCreate,
)
from ddpcontract.proxy_api import (
    DbtCliProfileFromDbtCore as DbtCliProfileFromDbtCore,
)
from ddpcontract.proxy_api import (
    DbtCliProfileUpdate as DbtCliProfileUpdate,
)
from ddpcontract.proxy_api import (
    DbtProfileName as DbtProfileName,
)
from ddpcontract.proxy_api import (
    DbtTaskRun as DbtTaskRun,
)
from ddpcontract.proxy_api import (
    Deployment as Deployment,
)
from ddpcontract.proxy_api import (
    DeploymentDeleted as DeploymentDeleted,
)
from ddpcontract.proxy_api import (
    DeploymentEntrypointUpdate as DeploymentEntrypointUpdate,
)
from ddpcontract.proxy_api import (
    DeploymentFilter as DeploymentFilter,
)
from ddpcontract.proxy_api import (
    DeploymentIds as DeploymentIds,
)
from ddpcontract.proxy_api import (
    DeploymentList as DeploymentList,
)
from ddpcontract.proxy_api import (
    DeploymentRef as DeploymentRef,
)
from ddpcontract.proxy_api import (
    ErrorBody as ErrorBody,
)
from ddpcontract.proxy_api import (
    FlowRun as FlowRun,
)
from ddpcontract.proxy_api import (
    FlowRunCreate as FlowRunCreate,
)
from ddpcontract.proxy_api import (
    FlowRunFilter as FlowRunFilter,
)
from ddpcontract.proxy_api import (
    FlowRunList as FlowRunList,
)
from ddpcontract.proxy_api import (
    FlowRunLogs as FlowRunLogs,
)
from ddpcontract.proxy_api import (
    FlowRunNotifications as FlowRunNotifications,
)
from ddpcontract.proxy_api import (
    FlowRunNotificationsDeleted as FlowRunNotificationsDeleted,
)
from ddpcontract.proxy_api import (
    FlowRunNotificationsWrite as FlowRunNotificationsWrite,
)
from ddpcontract.proxy_api import (
    FlowRunNotificationsWritten as FlowRunNotificationsWritten,
)
from ddpcontract.proxy_api import (
    FlowRunRef as FlowRunRef,
)
from ddpcontract.proxy_api import (
    FlowRunStateChange as FlowRunStateChange,
)
from ddpcontract.proxy_api import (
    HeaderName as HeaderName,
)
from ddpcontract.proxy_api import (
    Health as Health,
)
from ddpcontract.proxy_api import (
    LegacyBlock as LegacyBlock,
)
from ddpcontract.proxy_api import (
    LegacyBlockList as LegacyBlockList,
)
from ddpcontract.proxy_api import (
    LegacyBlocksDescribe as LegacyBlocksDescribe,
)
from ddpcontract.proxy_api import (
    LegacyDbtProfile as LegacyDbtProfile,
)
from ddpcontract.proxy_api import (
    LogLine as LogLine,
)
from ddpcontract.proxy_api import (
    ObjectName as ObjectName,
)
from ddpcontract.proxy_api import (
    OutgoingWebhookSend as OutgoingWebhookSend,
)
from ddpcontract.proxy_api import (
    OutgoingWebhookSent as OutgoingWebhookSent,
)
from ddpcontract.proxy_api import (
    Request as Request,
)
from ddpcontract.proxy_api import (
    ScheduleState as ScheduleState,
)
from ddpcontract.proxy_api import (
    ScheduleStates as ScheduleStates,
)
from ddpcontract.proxy_api import (
    SecretMerge as SecretMerge,
)
from ddpcontract.proxy_api import (
    SecretMerged as SecretMerged,
)
from ddpcontract.proxy_api import (
    SecretWrite as SecretWrite,
)
from ddpcontract.proxy_api import (
    ShellTaskRun as ShellTaskRun,
)
from ddpcontract.tasks import BLOCK_NAME_PATTERN as BLOCK_NAME_PATTERN
from ddpcontract.tasks import BlockName as BlockName
from ddpcontract.tasks import NonEmpty as NonEmpty


def check_cron(cron: str | None, timezone: str | None) -> None:
    """Raise ValueError with Prefect's own message if Prefect would refuse this cron schedule."""
    if cron is not None:
        CronSchedule(cron=cron, timezone=timezone)
    elif timezone is not None:
        CronSchedule(cron="0 0 * * *", timezone=timezone)


class DeploymentCreate(proxy_api.DeploymentCreate):
    @model_validator(mode="after")
    def _valid_schedule(self):
        check_cron(self.cron, self.timezone)
        return self


class DeploymentUpdate(proxy_api.DeploymentUpdate):
    __doc__ = proxy_api.DeploymentUpdate.__doc__

    @model_validator(mode="after")
    def _valid_schedule(self):
        check_cron(self.cron, self.timezone)
        return self
