"""Creates (idempotently, through the proxy) the Prefect automation and webhook block that post every
flow-run state change (never a heartbeat) to POST /webhooks/v1/notification/ with the WEBHOOK_SECRET header.
Run again, it updates an automation made by an earlier version (which also posted every heartbeat, or sent
through a Custom Webhook notification block: that block is deleted)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ddpui.errors import DomainError
from ddpui.prefect_client import get_proxy
from ddpui.webhooks import SECRET_HEADER

DEFAULT_URL = "http://127.0.0.1:8000/webhooks/v1/notification/"
DEFAULT_NAME = "ddpui-flow-run-notifications"


def _state_changes_only(done) -> str:
    return " of state changes only (no heartbeats)" if "prefect.state-type" in done.match else ""


class Command(BaseCommand):
    help = (
        "Create or update the Prefect automation and webhook block that send flow-run state changes to "
        "this installation's webhook with WEBHOOK_SECRET. Running it again changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--url", default=DEFAULT_URL, help=f"the webhook URL Prefect's server can reach (default {DEFAULT_URL})"
        )
        parser.add_argument(
            "--name",
            default=DEFAULT_NAME,
            help=f"name of the automation and of its webhook block (default {DEFAULT_NAME}); "
            "installations sharing one Prefect server need different names",
        )

    def handle(self, *args, **options):
        secret = settings.WEBHOOK_SECRET
        if not secret:
            raise CommandError(
                "WEBHOOK_SECRET is not set: set it to a long random value for Django (the webhook refuses every "
                "notification without it) and run this command again"
            )
        url, name = options["url"], options["name"]
        try:
            done = (
                get_proxy()
                .flow_run_notifications(name)
                .upsert(url=url, secret_header_name=SECRET_HEADER, secret=secret)
            )
        except DomainError as exc:
            raise CommandError(f"could not set the Prefect webhook up: {exc.message}") from exc
        self.stdout.write(f"webhook block '{done.block_name}' ({done.block_id}): {done.block_change}")
        self.stdout.write(
            f"automation '{done.name}' ({done.automation_id}): {done.automation_change}"
            f" (trigger: {', '.join(done.events)}{_state_changes_only(done)};"
            f" action: POST to {done.url} with the {SECRET_HEADER} header)"
        )
        if done.duplicates_removed:
            self.stdout.write(f"removed {done.duplicates_removed} other automation(s) of the same name")
        if done.legacy_block_removed:
            self.stdout.write(f"removed the earlier version's Custom Webhook notification block '{name}'")
        changed = done.block_change != "unchanged" or done.automation_change != "unchanged"
        if not changed and not done.duplicates_removed and not done.legacy_block_removed:
            self.stdout.write("setup_prefect_webhook: nothing to change, already set up")
        else:
            self.stdout.write("setup_prefect_webhook: done")
