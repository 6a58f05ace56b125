"""All ddpui models, one module per aggregate."""

from ddpui.models.alerts import (
    Alert,
    AlertChannel,
    AlertDelivery,
    AlertEvent,
    AlertSubscription,
    ConnectionFreshness,
    OrgAlertSettings,
)
from ddpui.models.audit import AuditEvent
from ddpui.models.dataflows import DataflowOrgTask, OrgDataFlowv1
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.legacy import BlockLock, DataflowBlock, OrgDataFlow, OrgPrefectBlock
from ddpui.models.locks import TaskLock
from ddpui.models.org import DbtTarget, Org, OrgDbt, OrgPrefectBlockv1, OrgUser, OrgWarehouse
from ddpui.models.progress import TaskProgress
from ddpui.models.tasks import OrgTask, Task

__all__ = [
    "Alert",
    "AlertChannel",
    "AlertDelivery",
    "AlertEvent",
    "AlertSubscription",
    "ConnectionFreshness",
    "OrgAlertSettings",
    "AuditEvent",
    "BlockLock",
    "DataflowBlock",
    "DataflowOrgTask",
    "DbtTarget",
    "Org",
    "OrgDataFlow",
    "OrgDataFlowv1",
    "OrgDbt",
    "OrgPrefectBlock",
    "OrgPrefectBlockv1",
    "OrgTask",
    "OrgUser",
    "OrgWarehouse",
    "PrefectFlowRun",
    "Task",
    "TaskLock",
    "TaskProgress",
]
