"""Tenants, memberships, and the org-level resources: warehouses, dbt project and its targets, persisted Prefect
blocks."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower

from ddpcontract.warehouses import WAREHOUSES


class Org(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    airbyte_workspace_id = models.CharField(max_length=64, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(Lower("name"), name="unique_org_name_ci")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class OrgUserRole(models.TextChoices):
    ACCOUNT_MANAGER = "account-manager", "Account manager"
    PIPELINE_MANAGER = "pipeline-manager", "Pipeline manager"
    ANALYST = "analyst", "Analyst (read-only)"


class OrgUser(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="orgusers")
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="orgusers")
    role = models.CharField(max_length=32, choices=OrgUserRole.choices, default=OrgUserRole.ANALYST)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "org"], name="unique_orguser_user_org")]

    def __str__(self) -> str:
        return f"{self.user.email} @ {self.org.slug} ({self.role})"


WarehouseType = models.TextChoices(
    "WarehouseType", [(wtype.name, (wtype.value, warehouse.label)) for wtype, warehouse in WAREHOUSES.items()]
)
WarehouseType.__doc__ = "The warehouse types of the registry (ddpcontract.warehouses) as model choices."


class OrgWarehouse(models.Model):
    """One of the org's warehouses, each its own Airbyte destination and credentials Secret block. Credentials are
    never stored here: only the name of the Secret block. The first one (lowest id) is the org's default: every
    answer the web app reads about "the" warehouse means it."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="warehouses")
    wtype = models.CharField(max_length=16, choices=WarehouseType.choices)
    name = models.CharField(max_length=100, blank=True, default="")
    credentials_block_name = models.CharField(max_length=200)
    airbyte_destination_id = models.CharField(max_length=64, null=True, blank=True)
    bq_location = models.CharField(max_length=50, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="unique_warehouse_name_per_org")]

    def __str__(self) -> str:
        return f"{self.org.slug}: {self.name or self.wtype} ({self.wtype})"


class OrgPrefectBlockv1(models.Model):
    """The only blocks persisted in Prefect: Airbyte server, dbt CLI profile (a Secret holding JSON), Secrets."""

    class BlockType(models.TextChoices):
        AIRBYTE_SERVER = "Airbyte Server", "Airbyte Server"
        DBT_CLI_PROFILE = "dbt CLI Profile", "dbt CLI Profile"
        SECRET = "Secret", "Secret"

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="prefect_blocks")
    block_type = models.CharField(max_length=32, choices=BlockType.choices)
    block_id = models.CharField(max_length=64)
    block_name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.block_type}: {self.block_name}"


class OrgDbt(models.Model):
    """The org's dbt project: where it comes from (git URL, Secret block of the pull URL, branch) and Django's own
    clone of it. Where it runs is its targets' business (DbtTarget)."""

    org = models.OneToOneField(Org, on_delete=models.CASCADE, related_name="dbt")
    gitrepo_url = models.CharField(max_length=500, null=True, blank=True)
    gitrepo_access_token_secret = models.CharField(
        max_length=200, null=True, blank=True, help_text="name of the Secret block holding the tokenised git URL"
    )
    gitrepo_branch = models.CharField(
        max_length=200, null=True, blank=True, help_text="the branch the workspace tracks (empty: the remote's default)"
    )
    project_dir = models.CharField(max_length=500, help_text="Django's own clone (workers make their own copies)")
    dbt_venv = models.CharField(max_length=500, null=True, blank=True, help_text="virtualenv whose bin/ holds dbt")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.org.slug}: {self.gitrepo_url or self.project_dir}"


class DbtTarget(models.Model):
    """A named dbt target of the org's workspace (e.g. dev, prod): the schema dbt builds into, the warehouse it
    builds in, and its own dbt CLI profile block (a Secret holding the profile JSON, credentials included). One
    target is the default: the one made with the workspace, used wherever no target is named."""

    dbt = models.ForeignKey(OrgDbt, on_delete=models.CASCADE, related_name="targets")
    name = models.CharField(max_length=32, help_text="the dbt target name (dbt --target)")
    schema = models.CharField(max_length=100)
    # SET_NULL: a warehouse deleted by an operator leaves the target without one, which every run refuses
    warehouse = models.ForeignKey(
        OrgWarehouse, on_delete=models.SET_NULL, null=True, blank=True, related_name="targets"
    )
    profile_block = models.ForeignKey(
        OrgPrefectBlockv1, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(fields=["dbt", "name"], name="unique_target_name_per_workspace"),
            models.UniqueConstraint(fields=["dbt"], condition=Q(is_default=True), name="one_default_target"),
            models.UniqueConstraint(F("warehouse"), Lower("schema"), name="unique_target_schema_per_warehouse"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.schema})"
