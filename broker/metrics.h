/*
 * metrics.h - the operators' HTTP endpoint, on the broker's own loop
 * (libevent's evhttp): /metrics in the Prometheus text exposition format
 * (version 0.0.4), /healthz (the loop answers) and /readyz (ready for
 * clients: journal replayed, listening, journal writable, disk not full;
 * 503 with the reason otherwise).
 *
 * Series are named ferry_*, counters end in _total, times are seconds and
 * sizes bytes; per-topic and per-group series carry topic and group labels.
 * At most opt->metrics_max_groups groups get series of their own, so a
 * burst of groups cannot flood Prometheus: the rest are left out, counted
 * in ferry_metrics_omitted_groups and logged (at most once a minute).
 */
#ifndef FERRY_BROKER_METRICS_H
#define FERRY_BROKER_METRICS_H

#include <stddef.h>

struct core;

/*
 * Listen on opt->metrics_listen ("ADDR:PORT"; port 0 picks one, logged as
 * "metrics: listening on http://ADDR:PORT/metrics").  A no-op without the
 * option.  0, or -errno (logged): -EINVAL for a bad address.
 */
int metrics_start(struct core *b);
void metrics_stop(struct core *b);

/* "ADDR:PORT" or "[V6ADDR]:PORT" into host (NUL-terminated, hlen bytes
 * at most) and port.  0 or -EINVAL. */
int metrics_addr_parse(const char *s, char *host, size_t hlen, int *port);

/*
 * Why the broker is not ready, in a sentence, or NULL if it is.  why is
 * the caller's buffer for a composed reason.
 */
const char *metrics_not_ready(struct core *b, char *why, size_t len);

#endif
