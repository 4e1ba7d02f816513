"""The Prometheus text format: the strict reader the tests use, and `render` with its escaping."""

from __future__ import annotations

import math

import pytest

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
