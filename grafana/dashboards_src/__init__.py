"""StreamPulse's Grafana dashboards as code (grafanalib).

``python -m grafana.dashboards_src`` (``make dashboards``) writes grafana/dashboards/*.json, which
Grafana loads through grafana/provisioning/dashboards. The JSON is committed so that the Compose
stack needs no Python to provision Grafana; tests/unit/test_dashboards.py fails when it is stale.
"""
