/*
 * broker.c - broker state, the end-of-turn flush, reaping of closed
 * connections, and signals.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

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
	uint64_t start = b->st.turn_start_ns ? b->st.turn_start_ns :
	    clock_turn_begin();
	struct conn *c;

	do {
		delivery_pump_due(b);
		store_commit(b);
		while ((c = list_first(&b->flush, struct conn, flink)))
			conn_flush(c);	/* unlinks c; may stage pumps */
	} while (!list_empty(&b->pumpq));
	if (b->draining)
		broker_drain_check(b);
	/*
	 * From the first read of the turn to here is how long the turn kept
	 * clients waiting.  (libevent's cached time would do, but it ticks
	 * with the 4 ms coarse clock.)
	 */
	hist_observe(&b->st.turn, &hist_turn_bounds,
	    (double)(mono_ns() - start) / 1e9);
	b->st.turn_start_ns = 0;
	clock_turn_end();
}

void
broker_turn_begin(struct broker *b)
{
	if (b->st.turn_start_ns)
		return;
	b->st.turn_start_ns = clock_turn_begin();
	/* a partial frame asks for no flush: this one ends the turn */
	event_active(b->flush_ev, 0, 0);
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct broker *b = arg;
	struct conn *c;

	while ((c = list_first(&b->reap, struct conn, link)))
		conn_free(c);	/* unlinks c */
}

void
broker_want_commit(struct broker *b)
{
	event_active(b->flush_ev, 0, 0);
}

void
broker_want_flush(struct broker *b, struct conn *c)
{
	if (list_empty(&b->flush))
		event_active(b->flush_ev, 0, 0);
	list_add_tail(&b->flush, &c->flink);
}

void
broker_want_reap(struct broker *b, struct conn *c)
{
	list_del(&c->link);
	list_add_tail(&b->reap, &c->link);
	event_active(b->reap_ev, 0, 0);
}

static void
mark_all_closing(struct broker *b)
{
	struct list *pos;

	list_for_each(pos, &b->conns)
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

	list_for_each(pos, &b->conns) {
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

	if (b->draining || !b->opt->drain_timeout_ms) {
		log_info("received %s; shutting down", strsignal((int)sig));
		broker_stop(b);
		return;
	}
	log_info("received %s; draining: waiting up to %u ms for %u "
	    "deliveries in flight (send it again to stop at once)",
	    strsignal((int)sig), b->opt->drain_timeout_ms, b->leases.used);
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

	if (!b->opt->config) {
		log_warn("SIGHUP: no --config file to read; log_level stays "
		    "%s", log_level_name(log_level));
		return;
	}
	if (options_init(&o) < 0)
		return;
	if (options_load_file(&o, b->opt->config, err, sizeof(err)) < 0) {
		log_warn("SIGHUP: %s; log_level stays %s", err,
		    log_level_name(log_level));
	} else if (o.log_level != log_level) {
		/* said at the old level and the new: whichever shows */
		log_info("SIGHUP: log_level %s -> %s (%s)",
		    log_level_name(log_level), log_level_name(o.log_level),
		    b->opt->config);
		log_level = o.log_level;
		log_info("SIGHUP: log_level is now %s",
		    log_level_name(log_level));
	} else {
		log_info("SIGHUP: log_level stays %s (%s)",
		    log_level_name(log_level), b->opt->config);
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
	auth_reload(b);
	tls_reload(b);
}

static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct broker *b = arg;

	log_warn("drain_timeout: %u deliveries still unacked and %llu "
	    "confirms waiting; they are delivered again after the restart",
	    b->leases.used, (unsigned long long)b->durable_waiting);
	broker_stop(b);
}

int
broker_drain(struct broker *b)
{
	struct timeval tv = { (time_t)(b->opt->drain_timeout_ms / 1000),
	    (suseconds_t)(b->opt->drain_timeout_ms % 1000 * 1000) };

	if (b->draining || b->stopping)
		return 0;
	b->draining = 1;
	broker_unlisten(b);
	service_stopping(b);
	if (!(b->drain_ev = evtimer_new(b->base, drain_timeout_cb, b)) ||
	    evtimer_add(b->drain_ev, &tv) < 0)
		return -ENOMEM;
	broker_drain_check(b);
	return 0;
}

void
broker_drain_check(struct broker *b)
{
	if (!b->draining || b->stopping || b->leases.used ||
	    b->durable_waiting)
		return;
	log_info("drained: no delivery in flight, every confirm sent");
	broker_stop(b);
}

void
broker_stop(struct broker *b)
{
	if (b->stopping)
		return;
	b->stopping = 1;
	broker_unlisten(b);
	/* Ends after the active callbacks of this turn, flush included. */
	event_base_loopexit(b->base, NULL);
}

uint64_t
broker_rand(struct broker *b)
{
	/* xorshift64*: jitter needs speed and spread, not secrecy. */
	b->rng ^= b->rng >> 12;
	b->rng ^= b->rng << 25;
	b->rng ^= b->rng >> 27;
	return b->rng * 2685821657736338717ull;
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
	struct timespec ts;
	uuid_t boot;

	memset(b, 0, sizeof(*b));
	b->base = base;
	b->opt = o;
	b->port = -1;
	b->st.started_ms = clock_mono_ms();
	list_init(&b->conns);
	list_init(&b->flush);
	list_init(&b->gated);
	list_init(&b->reap);
	list_init(&b->pumpq);
	topic_registry_init(b);
	request_init();
	delivery_init();
	store_init_hooks(&store_hooks);
	clock_gettime(CLOCK_REALTIME, &ts);
	b->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
	    ((uint64_t)getpid() << 40) ^ 0x9e3779b97f4a7c15ull;
	uuid_generate_random(boot);
	uuid_unparse_lower(boot, b->boot);
	lease_table_init(&b->leases);
	if (trace_init(&b->trace, o->trace_events) < 0)
		goto nomem;
	/*
	 * One priority for everything: the first read of a turn activates
	 * the flush behind the reads that the same epoll_wait made ready, so
	 * it still ends the turn.  libevent runs a lower priority only while
	 * no higher one is active: a flush (or reap) below the reads waited
	 * for as long as a producer kept its socket readable, holding back
	 * every delivery and confirm until the producer's window was full.
	 */
	b->flush_ev = event_new(base, -1, 0, flush_cb, b);
	b->reap_ev = event_new(base, -1, 0, reap_cb, b);
	if (!b->flush_ev || !b->reap_ev)
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
	metrics_stop(b);
	b->stopping = 1;
	/* The journal closes (and syncs) first: freeing the state below must
	 * not unreference records, or their segments would be deleted. */
	compact_stop(b);
	store_close(b);
	say_goodbye(b);
	/* Closing everyone first keeps releases from delivering to peers
	 * that are about to go too. */
	mark_all_closing(b);
	while ((c = list_first(&b->conns, struct conn, link)))
		conn_free(c);
	while ((c = list_first(&b->reap, struct conn, link)))
		conn_free(c);
	topic_registry_fini(b);
	auth_fini(b);
	trace_fini(&b->trace);
	lease_table_fini(&b->leases);
	qside_pool_trim();
	for (int i = 0; i < 3; i++)
		if (b->sig_ev[i])
			event_free(b->sig_ev[i]);
	if (b->drain_ev)
		event_free(b->drain_ev);
	b->drain_ev = NULL;
	if (b->flush_ev)
		event_free(b->flush_ev);
	if (b->reap_ev)
		event_free(b->reap_ev);
	memset(b->sig_ev, 0, sizeof(b->sig_ev));
	b->flush_ev = b->reap_ev = NULL;
}
