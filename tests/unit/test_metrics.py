"""The Prometheus text format: the strict reader the tests use, and `render` with its escaping."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from retention.interfaces import metrics
from tests.helpers import metric_value as value
from tests.helpers import parse_metrics as parse


def test_the_strict_parser_rejects_what_scrapers_reject():
    good = '# HELP a_total x\n# TYPE a_total counter\na_total{k="v"} 1\n'
    assert parse(good)
    for bad in (
        "# TYPE a gauge\na 1\n",
        '# HELP a x\n# TYPE a gauge\na{k="v} 1\n',
        "# HELP a x\n# TYPE a gauge\na 1\na 2\n",
        "# HELP a x\n# TYPE a counter\na 1\n",
        "# HELP a x\n# TYPE a gauge\na one\n",
        "# HELP a x\n# TYPE a gauge\n# HELP b y\n# TYPE b gauge\nb 1\na 2\n",
        "# HELP 1a x\n# TYPE 1a gauge\n1a 1\n",
    ):
        with pytest.raises(AssertionError):
            parse(bad)


def test_rendering_escapes_label_values_and_help():
    family = metrics.Family(name="retention_x", kind="gauge", help='back\\slash\nnew "q"')
    family.add(1.5, policy='table:we"ird\\name\nx')
    family.add(float("nan"), policy="nan")
    family.add(None, policy="absent")
    text = metrics.render([family])
    assert '# HELP retention_x back\\\\slash\\nnew "q"\n' in text
    samples = parse(text)
    assert value(samples, "retention_x", policy='table:we"ird\\name\nx') == 1.5
    assert math.isnan(value(samples, "retention_x", policy="nan"))
    assert len(samples) == 2
    with pytest.raises(ValueError, match="invalid label name"):
        metrics.render(
            [
                metrics.Family(
                    name="ok",
                    kind="gauge",
                    help="h",
                    samples=[metrics.Sample(labels={"bad-name": "v"}, value=1)],
                )
            ]
        )


def test_a_family_without_samples_is_its_help_and_type():
    family = metrics.Family(name="retention_runs_total", kind="counter", help="Runs.")
    assert metrics.render([family]) == (
        "# HELP retention_runs_total Runs.\n# TYPE retention_runs_total counter\n"
    )


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        (3, "3"),
        (3.0, "3"),
        (-2, "-2"),
        (0, "0"),
        (1.5, "1.5"),
        (0.1, "0.1"),
        (1e-9, "1e-09"),
        (2.0**53, "9007199254740992.0"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_values_are_written_as_scrapers_read_them(number, shown):
    family = metrics.Family(name="x", kind="gauge", help="h")
    family.add(number)
    assert metrics.render([family]).splitlines()[-1] == f"x {shown}"
    parsed = value(parse(metrics.render([family])), "x")
    assert math.isnan(parsed) if math.isnan(number) else parsed == number


def test_labels_keep_their_order_and_families_their_samples_together():
    runs = metrics.Family(name="retention_runs_total", kind="counter", help="Runs.")
    runs.add(2, kind="run", status="succeeded")
    runs.add(1, kind="purge", status="failed")
    up = metrics.Family(name="retention_up", kind="gauge", help="Up.")
    up.add(1)
    text = metrics.render([runs, up])
    assert text.splitlines() == [
        "# HELP retention_runs_total Runs.",
        "# TYPE retention_runs_total counter",
        'retention_runs_total{kind="run",status="succeeded"} 2',
        'retention_runs_total{kind="purge",status="failed"} 1',
        "# HELP retention_up Up.",
        "# TYPE retention_up gauge",
        "retention_up 1",
    ]
    assert value(parse(text), "retention_runs_total", kind="purge", status="failed") == 1


@pytest.mark.parametrize("name", ["1retention", "retention-x", "retention x", "", "rétention"])
def test_an_invalid_metric_name_is_refused(name):
    with pytest.raises(ValueError, match="invalid metric name"):
        metrics.render([metrics.Family(name=name, kind="gauge", help="h")])


@pytest.mark.parametrize("label", ["__reserved", "1st", "a-b", "a b", ""])
def test_an_invalid_label_name_is_refused(label):
    family = metrics.Family(name="x", kind="gauge", help="h")
    family.add(1, **{label: "v"})
    with pytest.raises(ValueError, match="invalid label name"):
        metrics.render([family])


def test_no_value_adds_no_sample():
    family = metrics.Family(name="x", kind="gauge", help="h")
    family.add(None, policy="absent")
    family.add(0, policy="zero")
    assert [sample.labels for sample in family.samples] == [{"policy": "zero"}]
    assert family.samples[0].value == 0.0
    assert isinstance(family.samples[0].value, float)


@given(
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30),
)
def test_any_label_value_and_help_survive_escaping(label_value, help_text):
    assume(help_text.strip())
    family = metrics.Family(name="retention_x", kind="gauge", help=help_text)
    family.add(7, policy=label_value)
    text = metrics.render([family])
    assert text.count("\n") == 3, "an escaped newline stays on its line"
    shown = text.split("\n")[0].removeprefix("# HELP retention_x ")
    assert re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\"}[m[1]], shown) == help_text
    assert value(parse(text), "retention_x", policy=label_value) == 7
