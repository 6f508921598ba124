/*
 * main.c - ferryd: options, loop, readiness, shutdown.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "auth.h"
#include "broker.h"
#include "compact.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "options.h"
#include "service.h"

int
main(int argc, char **argv)
{
	struct options o;
	struct broker b;
	struct event_base *base;
	char err[512] = "";
	int r, status = 1;

	if (options_init(&o) < 0) {
		fprintf(stderr, "ferryd: out of memory\n");
		return 1;
	}
	r = options_parse(&o, argc, argv);
	if (r != 0) {
		options_fini(&o);
		return r > 0 ? 0 : 2;
	}
	if (o.check_config) {
		char host[256];
		int port;

		if (o.metrics_listen && metrics_addr_parse(o.metrics_listen,
		    host, sizeof(host), &port) < 0) {
			fprintf(stderr, "ferryd: metrics_listen: expected "
			    "ADDR:PORT, got '%s'\n", o.metrics_listen);
			options_fini(&o);
			return 2;
		}
		printf("ferryd: configuration OK%s%s\n", o.config ? ": " : "",
		    o.config ? o.config : "");
		options_fini(&o);
		return 0;
	}
	log_level = o.log_level;
	/* A client that vanishes must not kill us on write. */
	signal(SIGPIPE, SIG_IGN);

	if (!(base = event_base_new())) {
		log_error("cannot create the event loop");
		goto out;
	}
	if (broker_init(&b, base, &o) < 0) {
		log_error("cannot initialise the broker");
		goto out_base;
	}
	/* Before the journal: a refused configuration touches nothing. */
	if (auth_init(&b.core) < 0)
		goto out_broker;
	if ((r = store_open(&b.core, err, sizeof(err))) < 0) {
		log_error("%s", err[0] ? err : strerror(-r));
		goto out_broker;
	}
	if (compact_start(&b.core) < 0) {
		log_error("cannot start compaction: out of memory");
		goto out_broker;
	}
	if (broker_listen(&b) < 0 || metrics_start(&b.core) < 0)
		goto out_broker;
	log_info("ferryd %s ready (data in %s)", FERRY_VERSION, o.data_dir);
	if (service_ready(&b.core) < 0) {
		log_error("cannot set up the systemd watchdog: out of memory");
		goto out_broker;
	}
	event_base_dispatch(base);
	service_stopping(&b.core);
	service_fini(&b.core);
	log_info("stopped");
	status = 0;
out_broker:
	broker_fini(&b);
out_base:
	event_base_free(base);
out:
	options_fini(&o);
	return status;
}
