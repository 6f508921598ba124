/*
 * broker.c - the top of broker/: sets every module up and tears it down,
 * drains the turn's work lists (the end-of-turn flush, reaping of closed
 * connections), and handles signals and draining.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <uuid/uuid.h>

#include "auth.h"
#include "broker.h"
#include "clock.h"
#include "compact.h"
#include "codec.h"
#include "conn.h"
#include "delivery.h"
#include "group.h"
#include "log.h"
#include "metrics.h"
#include "msg.h"
#include "options.h"
#include "request.h"
#include "server.h"
#include "service.h"
#include "tls.h"
#include "topic.h"

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * The end of every loop turn: deliver what became deliverable, write what
 * the turn journaled, then hand each connection's output to its socket as
 * far as the journal allows (conn.h owns that rule).  Writing first costs
 * a delivery no extra turn, only the write: a message never reaches a
 * consumer before its record is in the journal file.  A flush can free
 * credit (a drained socket), so this runs until no pump is due.
 */
static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct broker *b = arg;
	struct core *k = &b->core;
	uint64_t start = k->turn.start_ns ? k->turn.start_ns :
	    clock_turn_begin();
	struct conn *c;

	do {
		delivery_pump_due(k);
		store_commit(k);
		while ((c = list_first(&k->turn.flush, struct conn, flink)))
			conn_flush(c);	/* unlinks c; may stage pumps */
	} while (!list_empty(&k->pumpq));
	if (k->draining)
		broker_drain_check(b);
	/*
	 * From the first read of the turn to here is how long the turn kept
	 * clients waiting.  (libevent's cached time would do, but it ticks
	 * with the 4 ms coarse clock.)
	 */
	hist_observe(&k->st.turn, &hist_turn_bounds,
	    (double)(mono_ns() - start) / 1e9);
	k->turn.start_ns = 0;
	clock_turn_end();
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct broker *b = arg;
	struct conn *c;

	while ((c = list_first(&b->core.turn.reap, struct conn, link)))
		conn_free(c);	/* unlinks c */
}

static void
mark_all_closing(struct broker *b)
{
	struct list *pos;

	list_for_each(pos, &b->core.conns)
		list_entry(pos, struct conn, link)->state = CONN_CLOSING;
}

/*
 * Tell every client why its connection is closing, and push out what is
 * staged (confirms included) without blocking: the loop has stopped, so
 * this is one non-blocking write per socket, best effort.
 */
static void
say_goodbye(struct broker *b)
{
	struct list *pos;

	list_for_each(pos, &b->core.conns) {
		struct conn *c = list_entry(pos, struct conn, link);
		evutil_socket_t fd = conn_plain_fd(c);

		if (conn_is_open(c))
			conn_send_err(c, 0, FY_E_SHUTDOWN, 0,
			    "broker shutting down");
		conn_flush(c);
		if (fd >= 0)
			evbuffer_write(bufferevent_get_output(c->bev), fd);
	}
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct broker *b = arg;

	if (b->core.draining || !b->core.opt->drain_timeout_ms) {
		log_info("received %s; shutting down", strsignal((int)sig));
		broker_stop(b);
		return;
	}
	log_info("received %s; draining: waiting up to %u ms for %u "
	    "deliveries in flight (send it again to stop at once)",
	    strsignal((int)sig), b->core.opt->drain_timeout_ms, b->core.leases.used);
	if (broker_drain(b) < 0)
		broker_stop(b);
}

/*
 * Take log_level from the config file again, so that debug logging can be
 * turned on and off without a restart (the rest of the file needs one).
 * The file's value wins over --log-level here.
 */
static void
reload_log_level(struct broker *b)
{
	struct options o;
	char err[512];

	if (!b->core.opt->config) {
		log_warn("SIGHUP: no --config file to read; log_level stays "
		    "%s", log_level_name(log_level));
		return;
	}
	if (options_init(&o) < 0)
		return;
	if (options_load_file(&o, b->core.opt->config, err, sizeof(err)) < 0) {
		log_warn("SIGHUP: %s; log_level stays %s", err,
		    log_level_name(log_level));
	} else if (o.log_level != log_level) {
		/* said at the old level and the new: whichever shows */
		log_info("SIGHUP: log_level %s -> %s (%s)",
		    log_level_name(log_level), log_level_name(o.log_level),
		    b->core.opt->config);
		log_level = o.log_level;
		log_info("SIGHUP: log_level is now %s",
		    log_level_name(log_level));
	} else {
		log_info("SIGHUP: log_level stays %s (%s)",
		    log_level_name(log_level), b->core.opt->config);
	}
	options_fini(&o);
}

/*
 * SIGHUP, the one handler: reload everything that can be without a
 * restart, in this order (the new log level already applies to the rest):
 * log_level from the config file, users_file, the TLS certificate and
 * key.  Each keeps its old value when its new one is bad, and says so.
 */
static void
hup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct broker *b = arg;

	log_info("received SIGHUP: reloading log_level, users_file and the "
	    "TLS certificate");
	reload_log_level(b);
	auth_reload(&b->core);
	tls_reload(&b->core);
}

static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct broker *b = arg;

	log_warn("drain_timeout: %u deliveries still unacked and %llu "
	    "confirms waiting; they are delivered again after the restart",
	    b->core.leases.used, (unsigned long long)b->core.durable_waiting);
	broker_stop(b);
}

int
broker_drain(struct broker *b)
{
	struct timeval tv = { (time_t)(b->core.opt->drain_timeout_ms / 1000),
	    (suseconds_t)(b->core.opt->drain_timeout_ms % 1000 * 1000) };

	if (b->core.draining || b->core.stopping)
		return 0;
	b->core.draining = 1;
	broker_unlisten(b);
	service_stopping(&b->core);
	if (!(b->drain_ev = evtimer_new(b->core.base, drain_timeout_cb, b)) ||
	    evtimer_add(b->drain_ev, &tv) < 0)
		return -ENOMEM;
	broker_drain_check(b);
	return 0;
}

void
broker_drain_check(struct broker *b)
{
	if (!b->core.draining || b->core.stopping || b->core.leases.used ||
	    b->core.durable_waiting)
		return;
	log_info("drained: no delivery in flight, every confirm sent");
	broker_stop(b);
}

int
broker_listen(struct broker *b)
{
	return server_listen(&b->core);
}

void
broker_unlisten(struct broker *b)
{
	server_unlisten(&b->core);
}

void
broker_stop(struct broker *b)
{
	if (b->core.stopping)
		return;
	b->core.stopping = 1;
	broker_unlisten(b);
	/* Ends after the active callbacks of this turn, flush included. */
	event_base_loopexit(b->core.base, NULL);
}

/* The store reports the journal's progress to the held output. */
static const struct store_hooks store_hooks = {
	.progress = conn_journal_progress,
	.waiting = conn_durable_waiting,
};

int
broker_init(struct broker *b, struct event_base *base,
    const struct options *o)
{
	static const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
	uuid_t boot;

	memset(b, 0, sizeof(*b));
	b->core.base = base;
	b->core.opt = o;
	b->core.port = -1;
	b->core.st.started_ms = clock_mono_ms();
	list_init(&b->core.conns);
	list_init(&b->core.gated);
	list_init(&b->core.pumpq);
	if (turn_init(&b->core.turn, base, flush_cb, reap_cb, b) < 0)
		goto nomem;
	topic_registry_init(&b->core);
	request_init();
	group_init();
	delivery_init();
	store_init_hooks(&store_hooks);
	uuid_generate_random(boot);
	uuid_unparse_lower(boot, b->core.boot);
	lease_table_init(&b->core.leases);
	if (trace_init(&b->core.trace, o->trace_events) < 0)
		goto nomem;
	for (int i = 0; i < 3; i++) {
		b->sig_ev[i] = evsignal_new(base, sigs[i], sigs[i] == SIGHUP ?
		    hup_cb : signal_cb, b);
		if (!b->sig_ev[i] || evsignal_add(b->sig_ev[i], NULL) < 0)
			goto nomem;
	}
	return 0;
nomem:
	broker_fini(b);
	return -ENOMEM;
}

void
broker_fini(struct broker *b)
{
	struct conn *c;

	broker_unlisten(b);
	metrics_stop(&b->core);
	b->core.stopping = 1;
	/* The journal closes (and syncs) first: freeing the state below must
	 * not unreference records, or their segments would be deleted. */
	compact_stop(&b->core);
	store_close(&b->core);
	say_goodbye(b);
	/* Closing everyone first keeps releases from delivering to peers
	 * that are about to go too. */
	mark_all_closing(b);
	while ((c = list_first(&b->core.conns, struct conn, link)))
		conn_free(c);
	while ((c = list_first(&b->core.turn.reap, struct conn, link)))
		conn_free(c);
	topic_registry_fini(&b->core);
	auth_fini(&b->core);
	trace_fini(&b->core.trace);
	lease_table_fini(&b->core.leases);
	qside_pool_trim();
	for (int i = 0; i < 3; i++)
		if (b->sig_ev[i])
			event_free(b->sig_ev[i]);
	if (b->drain_ev)
		event_free(b->drain_ev);
	b->drain_ev = NULL;
	turn_fini(&b->core.turn);
	memset(b->sig_ev, 0, sizeof(b->sig_ev));
}
