"""Decisions, not records: when a version may take traffic, and when it must lose it.

- ``gates``, ``gate_metrics``, ``holdout``: the checks a version passes before serving;
- ``canary``, ``sequential``, ``sequential_stats``: canary steps judged by sequential tests;
- ``experiments``: A/B/n experiments between champion and challengers;
- ``drift_rules``: what a drift alarm on a served version triggers;
- ``policy``: the policy file that holds all of the above;
- ``queries``: what the policy reads from ClickHouse;
- ``replay``: logged features re-scored by a candidate, paired with what was served.
"""
