"""Integrations with frameworks: `retention.contrib.django`, the Django app."""
