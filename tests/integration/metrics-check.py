#!/usr/bin/python3
"""Check ferryd's /metrics against `ferry stats --json`.

usage: metrics-check.py METRICS_PORT STATS_JSON [MAX_RENDER_SECONDS]

Fetches http://127.0.0.1:METRICS_PORT/metrics, parses it with Prometheus'
own text parser (python3-prometheus-client), and checks that every group
row of STATS_JSON (the output of `ferry stats TOPIC --json`, taken while
nothing moved) has the same figures in the ferry_group_* series, that the
ack histogram counted every ack, and that the broker-wide series exist.
Exit 0 when all match, 1 with the differences listed, 77 (skip) when the
parser is not installed.  Run by tests/integration/test-metrics.c.
"""
import json
import sys
import urllib.request

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("python3-prometheus-client is not installed", file=sys.stderr)
    sys.exit(77)

# `ferry stats --json` key -> (metric family as the parser names it, the
# sample name, extra labels)
GROUP_FIELDS = {
    "ready": ("ferry_group_ready_messages", None),
    "delayed": ("ferry_group_delayed_messages", None),
    "inflight": ("ferry_group_inflight_messages", None),
    "bytes": ("ferry_group_bytes", None),
    "members": ("ferry_group_members", None),
    "enqueued": ("ferry_group_enqueued_messages_total", None),
    "delivered": ("ferry_group_delivered_messages_total", None),
    "acked": ("ferry_group_acked_messages_total", None),
    "nacked": ("ferry_group_nacked_messages_total", None),
    "expired": ("ferry_group_expired_messages_total", None),
    "dead_lettered": ("ferry_group_dead_lettered_messages_total", None),
    "timeouts": ("ferry_group_redelivered_messages_total", "timeout"),
    "disconnected": ("ferry_group_redelivered_messages_total", "disconnect"),
    "released": ("ferry_group_redelivered_messages_total", "release"),
}

BROKER_WIDE = [
    "ferry_connections", "ferry_connections_accepted_total",
    "ferry_received_bytes_total", "ferry_sent_bytes_total",
    "ferry_journal_segments", "ferry_journal_records_total",
    "ferry_journal_fdatasync_duration_seconds_count",
    "ferry_compaction_runs_total", "ferry_resident_memory_bytes",
    "ferry_memory_trims_total", "ferry_auth_denied_total",
    "ferry_loop_turn_duration_seconds_count",
]


def main():
    port, stats_path = sys.argv[1], sys.argv[2]
    max_render = float(sys.argv[3]) if len(sys.argv) > 3 else None
    with urllib.request.urlopen(
            "http://127.0.0.1:%s/metrics" % port, timeout=10) as r:
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode("utf-8")
    errors = []
    if not ctype.startswith("text/plain; version=0.0.4"):
        errors.append("Content-Type %r" % ctype)

    samples = {}        # (sample name, frozenset(labels)) -> value
    for fam in text_string_to_metric_families(text):
        if not fam.name.startswith("ferry_"):
            errors.append("family %s lacks the ferry_ prefix" % fam.name)
        if fam.type == "counter" and fam.samples and \
                not fam.samples[0].name.endswith("_total"):
            errors.append("counter %s does not end in _total" % fam.name)
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            if key in samples:
                errors.append("duplicate sample %s %s" % key)
            samples[key] = s.value

    def value(name, **labels):
        return samples.get((name, frozenset(labels.items())))

    with open(stats_path) as f:
        rows = json.load(f)
    groups = 0
    for row in rows:
        if not row.get("group"):
            got = value("ferry_topic_published_messages_total",
                        topic=row["topic"])
            if got != row["enqueued"]:
                errors.append("topic %s published: stats %s, metrics %s"
                              % (row["topic"], row["enqueued"], got))
            continue
        groups += 1
        labels = {"topic": row["topic"], "group": row["group"]}
        for key, (name, cause) in GROUP_FIELDS.items():
            extra = dict(labels, cause=cause) if cause else labels
            got = value(name, **extra)
            if got != row[key]:
                errors.append("%s/%s %s: stats %s, metrics %s (%s)" % (
                    row["topic"], row["group"], key, row[key], got, name))
        count = value("ferry_group_ack_duration_seconds_count", **labels)
        inf = value("ferry_group_ack_duration_seconds_bucket",
                    le="+Inf", **labels)
        if count != row["acked"] or inf != row["acked"]:
            errors.append("%s/%s ack histogram counted %s (+Inf %s), "
                          "acked %s" % (row["topic"], row["group"], count,
                                        inf, row["acked"]))
        for name in ("ferry_group_oldest_ready_age_seconds",
                     "ferry_group_oldest_unacked_age_seconds"):
            v = value(name, **labels)
            if v is None or v < 0:
                errors.append("%s/%s %s = %s" % (row["topic"],
                                                 row["group"], name, v))
        if row["ready"] and not value(
                "ferry_group_oldest_ready_age_seconds", **labels) > 0:
            errors.append("%s/%s holds ready messages of age 0" %
                          (row["topic"], row["group"]))
        if row["inflight"] and not value(
                "ferry_group_oldest_unacked_age_seconds", **labels) > 0:
            errors.append("%s/%s holds unacked deliveries of age 0" %
                          (row["topic"], row["group"]))
    if groups == 0:
        errors.append("no group rows in %s" % stats_path)
    for name in BROKER_WIDE:
        if value(name) is None:
            errors.append("missing %s" % name)
    # The CPU time: on a shared machine the wall-clock figure also counts
    # whatever else had the CPU; both are printed.
    render = value("ferry_metrics_render_seconds")
    cpu = value("ferry_metrics_render_cpu_seconds")
    if max_render is not None and (cpu is None or cpu > max_render):
        errors.append("render took %s s of CPU, more than %s" %
                      (cpu, max_render))
    for e in errors:
        print("metrics-check: " + e)
    print("metrics-check: %d samples, %d groups compared, render %s s "
          "(%s s CPU)" % (len(samples), groups, render, cpu))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
