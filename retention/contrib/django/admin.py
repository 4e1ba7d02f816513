""" "Retention runs" in the Django admin: the ledger, read-only like Procrastinate's job admin.

The list shows each run's status, trigger, kind, start, duration, what it deleted per target,
the space it reclaimed and its error, filtered by status, trigger and kind; a run's page shows
its per-target summary. Two more pages hang off the list:

- "Backlog" (`<admin>/…/run/backlog/`): what `retention status` computes, for anyone who may
  view runs;
- "Preview (dry run)" and "Run now" (buttons on the list, POST only): defer `retention:run`
  through Procrastinate's Django app, for users with the `run_retention` permission.

Everything shown comes from the database and is printed as text: Django escapes it, nothing here
is marked safe.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from retention.config import dsn
from retention.contrib.django import admin_views, models
from retention.engine import results
from retention.interfaces import report

ERROR_SHOWN = 80


def duration(run: models.Run) -> dt.timedelta | None:
    """How long the run took, or has been going."""
    end = run.finished_at or (timezone.now() if run.status == "running" else run.heartbeat_at)
    if end is None or run.started_at is None:
        return None
    took: dt.timedelta = end - run.started_at
    return max(took, dt.timedelta(0))


@admin.register(models.Run)
class RunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "status",
        "trigger",
        "kind_shown",
        "started_at",
        "duration_shown",
        "deleted_shown",
        "reclaimed",
        "error_shown",
    )
    list_display_links = ("id",)
    list_filter = ("status", "trigger", "kind", "dry_run")
    date_hierarchy = "started_at"
    ordering = ("-started_at", "-id")
    fields = (
        "id",
        "status",
        "trigger",
        "kind_shown",
        "started_at",
        "finished_at",
        "duration_shown",
        "stage",
        "progress",
        "reclaimed",
        "per_target",
        "error",
        "host",
        "pid",
        "summary_shown",
    )
    readonly_fields = fields
    change_list_template = "admin/retention/run/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {}

    def may_run(self, request: HttpRequest) -> bool:
        """Whether the user may defer runs (the `run_retention` permission of this app)."""
        return bool(request.user.has_perm(f"{self.opts.app_label}.{admin_views.PERMISSION}"))

    @admin.display(description="kind", ordering="kind")
    def kind_shown(self, run: models.Run) -> str:
        return f"{run.kind} (dry run)" if run.dry_run else str(run.kind)

    @admin.display(description="duration")
    def duration_shown(self, run: models.Run) -> str:
        took = duration(run)
        return "" if took is None else f"{took.total_seconds():.1f} s"

    @admin.display(description="deleted")
    def deleted_shown(self, run: models.Run) -> str:
        totals = results.RunTotals.from_json(run.summary)
        return ", ".join(f"{target}: {count}" for target, count in totals.deleted.items())

    @admin.display(description="reclaimed")
    def reclaimed(self, run: models.Run) -> str:
        reclaimed = results.RunTotals.from_json(run.summary).bytes
        return report.human_bytes(reclaimed) if reclaimed else ""

    @admin.display(description="error")
    def error_shown(self, run: models.Run) -> str:
        error = str(run.error or "")
        return error if len(error) <= ERROR_SHOWN else error[: ERROR_SHOWN - 1] + "…"

    @admin.display(description="per target")
    def per_target(self, run: models.Run) -> str:
        rows = admin_views.targets(run.summary)
        if not rows:
            return "nothing recorded"
        verb = "would delete" if run.dry_run else "deleted"
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((row.name, row.deleted, row.details) for row in rows),
        )
        return format_html(  # type: ignore[no-any-return]
            '<table class="retention-targets"><thead><tr><th>target</th><th>{}</th>'
            "<th>details</th></tr></thead><tbody>{}</tbody></table>",
            verb,
            body,
        )

    @admin.display(description="summary")
    def summary_shown(self, run: models.Run) -> str:
        return format_html(  # type: ignore[no-any-return]
            '<pre class="retention-summary">{}</pre>',
            json.dumps(run.summary, indent=2, sort_keys=True),
        )

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("backlog/", wrap(self.backlog_view), name=f"{prefix}_backlog"),
            path("preview/", wrap(self.preview_view), name=f"{prefix}_preview"),
            path("run-now/", wrap(self.run_now_view), name=f"{prefix}_run_now"),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {"may_run": self.may_run(request), **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)

    def backlog_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Retention backlog",
            "may_run": self.may_run(request),
        }
        try:
            data = admin_views.backlog()
        except Exception as exc:  # shown on the page: no database, no tasks, bad settings
            context["problem"] = dsn.redact(f"{type(exc).__name__}: {exc}")
        else:
            outbox = data.get("outbox") or {}
            context.update(
                rows=admin_views.backlog_rows(data),
                outbox=outbox,
                problems=outbox.get("problems", []),
                jobs=data.get("jobs", []),
            )
        return TemplateResponse(request, "admin/retention/run/backlog.html", context)

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        return self._defer(request, dry_run=True)

    def run_now_view(self, request: HttpRequest) -> HttpResponse:
        return self._defer(request, dry_run=False)

    def _defer(self, request: HttpRequest, *, dry_run: bool) -> HttpResponse:
        if request.method != "POST" or not self.may_run(request):
            raise PermissionDenied
        try:
            deferred = admin_views.defer_run(dry_run=dry_run)
        except admin_views.NotInstalled as exc:
            messages.error(request, str(exc))
        else:
            level = messages.WARNING if deferred.waiting else messages.SUCCESS
            messages.add_message(request, level, deferred.message(dry_run))
        changelist = reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_changelist"
        )
        return HttpResponseRedirect(changelist)
