"""`driftline report canary|experiment|drift`: one self-contained HTML page to attach to a
change record.

Everything is read from the store (the audit log's events with their evidence, the drift
table) through ``query(sql) -> (columns, rows)``, and drawn as inline SVG: the file
needs nothing else to open, anywhere.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from driftline.lineage.registry.versions import check_model_name

Query = Callable[[str], tuple[list[str], list[list]]]
KINDS = ("canary", "experiment", "drift")
_COLOURS = ("#2f6fdf", "#df6f2f", "#2a9d5c", "#9b59b6", "#c0392b", "#7f8c8d")


def _events(query: Query, database: str, model: str) -> list[dict[str, Any]]:
    _, rows = query(
        "SELECT toUnixTimestamp64Milli(occurred_at), event_type, version, actor, canonical "
        f"FROM {database}.audit_log WHERE model = '{model}' ORDER BY seq"
    )
    events = []
    for at, event, version, actor, canonical in rows:
        body = json.loads(canonical)
        evidence = body.get("evidence") or {}
        events.append(
            {
                "at": int(at),
                "event": event,
                "version": version,
                "actor": actor,
                "attributes": body.get("attributes") or {},
                "evidence": json.loads(evidence) if isinstance(evidence, str) else evidence,
            }
        )
    return events


def chart(
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    y_label: str,
    step: bool = False,
    x_label: Callable[[float], str] | None = None,
) -> str:
    """An inline SVG line chart of ``(name, [(x, y)])`` series, with a legend; ``x`` is
    epoch ms unless ``x_label`` says how to print it."""
    x_label = x_label or _clock
    points = [(x, y) for _, values in series for x, y in values if math.isfinite(y)]
    if not points:
        return f"<h3>{html.escape(title)}</h3><p>nothing recorded yet</p>"
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(0.0, min(p[1] for p in points)), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    width, height, pad = 720, 220, 40

    def at(x: float, y: float) -> str:
        return (
            f"{pad + (x - x0) / (x1 - x0) * (width - 2 * pad):.1f},"
            f"{height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad):.1f}"
        )

    lines, legend = [], []
    for k, (name, values) in enumerate(series):
        colour = _COLOURS[k % len(_COLOURS)]
        coords = []
        for i, (x, y) in enumerate(values):
            if step and i:
                coords.append(at(x, values[i - 1][1]))
            coords.append(at(x, y))
        drawn = " ".join(coords)
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{drawn}"/>')
        legend.append(f'<span style="color:{colour}">&#9632; {html.escape(name)}</span>')
    base = height - pad
    axes = (
        f'<line x1="{pad}" y1="{base}" x2="{width - pad}" y2="{base}" stroke="#999"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{base}" stroke="#999"/>'
        f'<text x="{pad}" y="{pad - 8}" font-size="11">{html.escape(y_label)} '
        f"(max {y1:.4g})</text>"
        f'<text x="{pad}" y="{height - 8}" font-size="11">{x_label(x0)}</text>'
        f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">'
        f"{x_label(x1)}</text>"
    )
    return (
        f"<h3>{html.escape(title)}</h3>"
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
        f"{axes}{''.join(lines)}</svg><p>{' '.join(legend)}</p>"
    )


def _clock(ms: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row)
        + "</tr>"
        for row in rows
    )  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def canary_report(events: list[dict[str, Any]]) -> str:
    """The canary's share over time, and each step with its guardrails and reasons."""
    shares: dict[int, list[tuple[float, float]]] = {}
    steps = []
    for e in events:
        percent = e["attributes"].get("traffic_bp")
        if e["event"] in ("canary_started", "traffic_changed") and percent is not None:
            shares.setdefault(e["version"], []).append((e["at"], int(percent) / 100))
        elif e["event"] in ("promoted", "archived", "rolled_back") and e["version"] in shares:
            shares[e["version"]].append((e["at"], 100.0 if e["event"] == "promoted" else 0.0))
        if e["version"] in shares:
            guardrails = e["evidence"].get("guardrails") or []
            verdict = "; ".join(
                f"{g['name']} {g['status']} ({g.get('value')} vs {g.get('limit')})"
                for g in guardrails
            )
            steps.append(
                [_clock(e["at"]), f"v{e['version']}", e["event"], e["actor"],
                 e["evidence"].get("reason", ""), verdict]
            )  # fmt: skip
    series = [(f"v{v} share (%)", values) for v, values in sorted(shares.items())]
    return chart("Canary share of traffic", series, y_label="% of entities", step=True) + _table(
        ["time", "version", "event", "by", "reason", "guardrails"], steps
    )


def experiment_report(events: list[dict[str, Any]]) -> str:
    """The sequential test's statistic at each decision against its boundary, and the verdicts."""
    path: list[tuple[float, float]] = []
    boundary: list[tuple[float, float]] = []
    rows = []
    for e in events:
        test = e["evidence"].get("test")
        if not isinstance(test, dict) or test.get("statistic") is None:
            continue
        # Against the samples seen: the test's own clock, whatever the wall clock did.
        n = float((test.get("n_control") or 0) + (test.get("n_treatment") or 0))
        path.append((n, float(test["statistic"])))
        alpha = float(test.get("alpha") or 0.05)
        boundary.append((n, math.log(1 / alpha)))
        rows.append(
            [_clock(e["at"]), f"v{e['version']}", e["event"], test.get("outcome"),
             f"{test['statistic']:.3f}", test.get("p_value"), test.get("n_control"),
             test.get("n_treatment"), test.get("ci")]
        )  # fmt: skip
    return chart(
        "Sequential test (mSPRT): log likelihood ratio against the boundary log(1/alpha)",
        [("log likelihood ratio", path), ("boundary", boundary)],
        y_label="log LR",
        x_label=lambda n: f"{n:,.0f} samples",
    ) + _table(
        ["time", "version", "event", "outcome", "statistic", "p-value", "n control",
         "n treatment", "CI of the difference"],
        rows,
    )  # fmt: skip


def drift_report(query: Query, database: str, model: str) -> str:
    """Each detector's statistic against its threshold, for the features that alarmed most."""
    _, rows = query(
        "SELECT toUnixTimestamp64Milli(detected_at), version, ifNull(arm, ''), detector, "
        f"ifNull(feature, ''), statistic, threshold FROM {database}.drift_unique "
        f"WHERE model = '{model}' ORDER BY detected_at"
    )
    by_key: dict[tuple[str, str], list] = {}
    for at, _version, _arm, detector, feature, statistic, threshold in rows:
        by_key.setdefault((detector, feature), []).append((at, statistic, threshold))
    busiest = sorted(by_key, key=lambda k: -len(by_key[k]))[:6]
    charts = [
        chart(
            f"{detector} {feature or '(scores/errors)'}",
            [("statistic", [(a, s) for a, s, _ in by_key[(detector, feature)]]),
             ("threshold", [(a, t) for a, _, t in by_key[(detector, feature)]])],
            y_label="statistic",
        )
        for detector, feature in busiest
    ]  # fmt: skip
    table = _table(
        ["time", "version", "arm", "detector", "feature", "statistic", "threshold"],
        [[_clock(r[0]), *r[1:5], f"{r[5]:.4f}", f"{r[6]:.4f}"] for r in rows[-50:]],
    )
    return "".join(charts) + table


def report(kind: str, query: Query, database: str, model: str) -> str:
    """The whole HTML page of a ``kind`` report on ``model``."""
    if kind not in KINDS:
        raise ValueError(f"unknown report {kind!r}; choose one of {', '.join(KINDS)}")
    check_model_name(model)
    if kind == "drift":
        body = drift_report(query, database, model)
    else:
        events = _events(query, database, model)
        body = canary_report(events) if kind == "canary" else experiment_report(events)
    title = f"driftline {kind} report: {model}"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#1d2330}"
        "table{border-collapse:collapse;font-size:12px;margin:1rem 0}"
        "th,td{border-bottom:1px solid #e3e6ea;padding:2px 6px;text-align:left}"
        "svg{background:#fbfcfd;border:1px solid #e3e6ea}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>generated {_clock(time.time() * 1000)} UTC from the "
        f"audit log and the drift table</p>{body}</body></html>"
    )
