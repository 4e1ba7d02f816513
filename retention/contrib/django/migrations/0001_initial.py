"""Our tables, through our own SQL migrations (`retention.pg.migrate`, as `retention migrate`
applies them): whichever of the two runs first, the other finds them applied. It runs on the
database being migrated, on a connection of its own with the same parameters, outside a
transaction (an index is built concurrently)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations, models

from retention.contrib.django import database


def apply_retention_migrations(apps: Any, schema_editor: Any) -> None:
    database.migrate(schema_editor.connection.alias)


class Migration(migrations.Migration):
    atomic = False
    initial = True

    dependencies: ClassVar[list[tuple[str, str]]] = [
        ("procrastinate", "0041_post_retry_failed_job")
    ]

    operations: ClassVar[list[Any]] = [
        migrations.RunPython(apply_retention_migrations, migrations.RunPython.noop, atomic=False),
        migrations.CreateModel(
            name="Run",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("kind", models.TextField()),
                ("trigger", models.TextField()),
                ("dry_run", models.BooleanField()),
                ("status", models.TextField()),
                ("started_at", models.DateTimeField()),
                ("heartbeat_at", models.DateTimeField()),
                ("finished_at", models.DateTimeField(null=True)),
                ("stage", models.TextField(null=True)),
                ("progress", models.FloatField(null=True)),
                ("settings", models.JSONField()),
                ("summary", models.JSONField()),
                ("error", models.TextField(null=True)),
                ("host", models.TextField(null=True)),
                ("pid", models.IntegerField(null=True)),
                ("backend_pid", models.IntegerField(null=True)),
                ("backend_start", models.DateTimeField(null=True)),
            ],
            options={
                "verbose_name": "retention run",
                "verbose_name_plural": "retention runs",
                "db_table": "retention_runs",
                "ordering": ("-started_at",),
                "managed": False,
                "permissions": (("run_retention", "Can run retention (preview or run now)"),),
            },
        ),
    ]
