/*
 * service.c - sd_notify() from the loop (service.h).
 */
#include "service.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "core.h"
#include "group.h"
#include "list.h"
#include "log.h"
#include "topic.h"

#define STATUS_EVERY_US 5000000	/* without a watchdog */

static struct event *tick_ev;	/* one broker per process */

/* Messages the broker holds: in every group, and in topic backlogs. */
static uint64_t
pending(const struct core *b)
{
	const struct list *pos;
	uint64_t n = 0;
	uint32_t i;

	for (i = 0; i < b->topics_cap; i++)
		for (const struct topic *t = b->topics[i]; t; t = t->hnext) {
			n += t->nbacklog;
			list_for_each(pos, &t->groups)
				n += list_entry(pos, struct group,
				    tlink)->nheld;
		}
	return n;
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct core *b = arg;
	char msg[192];

	/* One datagram: the ping proves the loop turns, the status says
	 * what it carries (systemctl status shows it). */
	snprintf(msg, sizeof(msg), "WATCHDOG=1\nSTATUS=%u connections, "
	    "%" PRIu64 " messages pending, %u topics, %u groups",
	    b->nconns, pending(b), b->ntopics, b->ngroups);
	sd_notify(0, msg);
}

int
service_ready(struct core *b)
{
	uint64_t usec = 0;
	struct timeval tv;

	sd_notify(0, "READY=1");
	if (!getenv("NOTIFY_SOCKET"))
		return 0;	/* no systemd (or alike) listening */
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		usec /= 2;
		log_info("systemd watchdog: pinging every %" PRIu64 " ms",
		    usec / 1000);
	} else {
		usec = STATUS_EVERY_US;
	}
	tv.tv_sec = (time_t)(usec / 1000000);
	tv.tv_usec = (suseconds_t)(usec % 1000000);
	tick_ev = event_new(b->base, -1, EV_PERSIST, tick_cb, b);
	if (!tick_ev || event_add(tick_ev, &tv) < 0)
		return -ENOMEM;
	tick_cb(-1, 0, b);	/* the first status at once */
	return 0;
}

void
service_stopping(struct core *b)
{
	static int said;

	if (!said++)
		sd_notify(0, "STOPPING=1");
}

void
service_fini(struct core *b)
{
	if (tick_ev) {
		event_free(tick_ev);
		tick_ev = NULL;
	}
}
