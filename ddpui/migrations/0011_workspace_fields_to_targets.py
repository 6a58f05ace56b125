"""The dbt workspace's schema, target type and profile block now live on its targets: 0010 moved them there."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('ddpui', '0010_workspaces_to_targets'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='orgdbt',
            name='cli_profile_block',
        ),
        migrations.RemoveField(
            model_name='orgdbt',
            name='default_schema',
        ),
        migrations.RemoveField(
            model_name='orgdbt',
            name='target_type',
        ),
    ]
