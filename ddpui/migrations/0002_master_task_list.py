"""Installs the master task list from fixtures/tasks.json, so `migrate` is all a new install needs."""

import json
from pathlib import Path

from django.db import migrations

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "tasks.json"


def install_tasks(apps, schema_editor):
    Task = apps.get_model("ddpui", "Task")
    for row in json.loads(FIXTURE.read_text()):
        fields = row["fields"]
        Task.objects.update_or_create(slug=fields["slug"], defaults={k: v for k, v in fields.items() if k != "slug"})


class Migration(migrations.Migration):
    dependencies = [("ddpui", "0001_initial")]

    operations = [migrations.RunPython(install_tasks, migrations.RunPython.noop)]
