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

struct core;

/* Tell systemd ferryd is ready (journal replayed, listening) and start
 * the watchdog and status timer.  0 or -ENOMEM. */
int service_ready(struct core *b);

/* STOPPING=1, once: a drain starts, or the loop ended.  The watchdog
 * keeps being pinged while the loop turns. */
void service_stopping(struct core *b);

/* The timer ends (before the event_base goes). */
void service_fini(struct core *b);

#endif
