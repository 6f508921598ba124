/*
 * tls.h - the TLS listener: TLS 1.2 and 1.3 on tls_port of the listen
 * address, with tls_cert and tls_key, and, with tls_ca, client
 * certificates verified against it (mutual TLS; auth.c maps a verified
 * certificate to a user).
 *
 * Connections are ordinary conns whose bufferevent is libevent's
 * bufferevent_openssl: everything above conn.c sees the same byte stream.
 * tls_reload() (SIGHUP) builds a new context from the files and swaps it
 * in; connections keep the one they were accepted with.
 *
 * Errors: -errno, the reason logged in one line.
 */
#ifndef FERRY_BROKER_TLS_H
#define FERRY_BROKER_TLS_H

#include <stddef.h>

struct core;
struct conn;

/* Load the certificate and bind the TLS listener if tls_cert is set; its
 * port is in b->tls_port afterwards.  0 or -errno. */
int tls_listen(struct core *b);
void tls_fini(struct core *b);

/* Re-read tls_cert, tls_key and tls_ca; keep the old context on error. */
int tls_reload(struct core *b);

/* The subject names of c's client certificate if TLS verified it against
 * tls_ca: its DNS and email subjectAltNames, then its CN, each offered to
 * fn until it returns non-zero (which is returned).  0 if none matched,
 * or c has no verified certificate. */
int tls_peer_names(struct conn *c, int (*fn)(void *arg, const char *name),
    void *arg);

/* "TLSv1.3" etc. for c, or NULL for a plain connection. */
const char *tls_version(struct conn *c);

#endif
