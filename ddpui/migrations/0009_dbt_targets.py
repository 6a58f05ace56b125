"""Several dbt targets and warehouses per organisation (issue 19), the schema: DbtTarget; several OrgWarehouse rows
per org (the first is the default); the tracked branch of a workspace; a pipeline's target, a run's target name;
task locks per (task, target). 0010 moves every existing workspace onto a default target, 0011 drops the
workspace's own schema, target type and profile columns (three migrations, so that data and schema changes never
share a transaction: PostgreSQL refuses to alter a table with pending trigger events).
"""

import django.db.models.deletion
import django.db.models.functions.text
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ddpui', '0008_alerts'),
    ]

    operations = [
        migrations.CreateModel(
            name='DbtTarget',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(help_text='the dbt target name (dbt --target)', max_length=32)),
                ('schema', models.CharField(max_length=100)),
                ('is_default', models.BooleanField(default=False)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'ordering': ['-is_default', 'name'],
            },
        ),
        migrations.AlterModelOptions(
            name='orgwarehouse',
            options={'ordering': ['id']},
        ),
        migrations.AddField(
            model_name='orgdbt',
            name='gitrepo_branch',
            field=models.CharField(blank=True, help_text="the branch the workspace tracks (empty: the remote's default)", max_length=200, null=True),
        ),
        migrations.AddField(
            model_name='prefectflowrun',
            name='target_name',
            field=models.CharField(blank=True, default='', max_length=32),
        ),
        migrations.AlterField(
            model_name='orgdbt',
            name='project_dir',
            field=models.CharField(help_text="Django's own clone (workers make their own copies)", max_length=500),
        ),
        migrations.AlterField(
            model_name='orgwarehouse',
            name='org',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='warehouses', to='ddpui.org'),
        ),
        migrations.AlterField(
            model_name='tasklock',
            name='orgtask',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='locks', to='ddpui.orgtask'),
        ),
        migrations.AddConstraint(
            model_name='orgwarehouse',
            constraint=models.UniqueConstraint(fields=('org', 'name'), name='unique_warehouse_name_per_org'),
        ),
        migrations.AddField(
            model_name='dbttarget',
            name='dbt',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='targets', to='ddpui.orgdbt'),
        ),
        migrations.AddField(
            model_name='dbttarget',
            name='profile_block',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='ddpui.orgprefectblockv1'),
        ),
        migrations.AddField(
            model_name='dbttarget',
            name='warehouse',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='targets', to='ddpui.orgwarehouse'),
        ),
        migrations.AddField(
            model_name='orgdataflowv1',
            name='target',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.RESTRICT, related_name='dataflows', to='ddpui.dbttarget'),
        ),
        migrations.AddField(
            model_name='tasklock',
            name='target',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='locks', to='ddpui.dbttarget'),
        ),
        migrations.AddConstraint(
            model_name='tasklock',
            constraint=models.UniqueConstraint(condition=models.Q(('target__isnull', True)), fields=('orgtask',), name='one_lock_per_task_without_target'),
        ),
        migrations.AddConstraint(
            model_name='tasklock',
            constraint=models.UniqueConstraint(condition=models.Q(('target__isnull', False)), fields=('orgtask', 'target'), name='one_lock_per_task_and_target'),
        ),
        migrations.AddConstraint(
            model_name='dbttarget',
            constraint=models.UniqueConstraint(fields=('dbt', 'name'), name='unique_target_name_per_workspace'),
        ),
        migrations.AddConstraint(
            model_name='dbttarget',
            constraint=models.UniqueConstraint(condition=models.Q(('is_default', True)), fields=('dbt',), name='one_default_target'),
        ),
        migrations.AddConstraint(
            model_name='dbttarget',
            constraint=models.UniqueConstraint(models.F('warehouse'), django.db.models.functions.text.Lower('schema'), name='unique_target_schema_per_warehouse'),
        ),
    ]
