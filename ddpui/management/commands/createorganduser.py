"""Bootstrap: an org, a user and the user's role in it. Running it twice changes nothing."""

from django.core.management.base import BaseCommand, CommandError

from ddpui.errors import DomainError
from ddpui.models.org import OrgUserRole
from ddpui.services.users import org_and_user_bootstrap


class Command(BaseCommand):
    help = "Create an organization and a user with a role in it (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--org", help="organization name (matched case-insensitively); leave out to create only the user"
        )
        parser.add_argument("--email", required=True)
        parser.add_argument("--password", required=True, help="used only when the user is created")
        parser.add_argument("--role", default=OrgUserRole.ACCOUNT_MANAGER, choices=OrgUserRole.values)
        parser.add_argument("--staff", action="store_true", help="also let this user into the Django admin")

    def handle(self, *args, **options):
        try:
            done = org_and_user_bootstrap(
                org_name=options["org"],
                email=options["email"],
                password=options["password"],
                role=options["role"],
                staff=options["staff"],
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        if not done:
            self.stdout.write("nothing to do: everything asked for already exists")
        for line in done:
            self.stdout.write(line)
