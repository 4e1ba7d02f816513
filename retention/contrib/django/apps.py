"""The Django app: put "retention.contrib.django" in INSTALLED_APPS next to
"procrastinate.contrib.django". When Django is ready, it loads our settings (see
`retention.contrib.django.settings`) and adds the retention tasks to Procrastinate's Django app
under the "retention" namespace, whichever of the two apps is listed first; the tasks then run on
Procrastinate's database alias (PROCRASTINATE_DATABASE_ALIAS), as its connector tells them. A bad
setting adds no task and is reported by `./manage.py check` (see `checks`), never raised here.
"""

from __future__ import annotations

from django import apps
from django.core import checks as django_checks

from retention.contrib.django import checks
from retention.contrib.django import settings as django_settings
from retention.interfaces import tasks

PROCRASTINATE_APP = django_settings.PROCRASTINATE_APP


class RetentionConfig(apps.AppConfig):
    name = "retention.contrib.django"
    label = "retention"
    verbose_name = "Retention"
    default_auto_field = "django.db.models.BigAutoField"

    loaded: django_settings.Loaded | None = None
    # Whether the tasks were already in Procrastinate's app when we came to add them (a
    # PROCRASTINATE_ON_APP_READY hook that adds them too).
    added_elsewhere: bool = False

    def ready(self) -> None:
        django_checks.register(checks.check_retention, "retention")
        self.loaded = django_settings.load()
        if self.loaded.settings is None or not apps.apps.is_installed(PROCRASTINATE_APP):
            return
        from procrastinate.contrib.django import procrastinate_app

        # Before Procrastinate's app is ready this is the blueprint its ready() copies from.
        target = procrastinate_app.current_app
        if tasks.LOCKED_TASKS[0] in target.tasks:
            self.added_elsewhere = True
            return
        target.add_tasks_from(tasks.blueprint(self.loaded.settings), namespace=tasks.NAMESPACE)


def config() -> RetentionConfig:
    found = apps.apps.get_app_config("retention")
    assert isinstance(found, RetentionConfig)
    return found
