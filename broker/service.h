/*
 * service.h - ferryd as a systemd service: readiness, the watchdog,
 * STATUS= lines and STOPPING=1 over sd_notify().
 *
 * Without systemd (no NOTIFY_SOCKET) every call is a cheap no-op.  The
 * watchdog is pinged from a timer on the broker's loop, at half the
 * interval systemd asks for (WatchdogSec=, passed as WATCHDOG_USEC): a
 * loop that stops turning stops the pings, and systemd restarts ferryd.
 */
#ifndef FERRY_BROKER_SERVICE_H
#define FERRY_BROKER_SERVICE_H

struct broker;

/* Tell systemd ferryd is ready (journal replayed, listening) and start
 * the watchdog and status timer.  0 or -ENOMEM. */
int service_ready(struct broker *b);

/* STOPPING=1, and the timer ends.  NULL-safe on a broker never ready. */
void service_stopping(struct broker *b);

#endif
