/*
 * auth.h - who a connection is (SCRAM-SHA-256 in the handshake) and what
 * it may do (the users file's patterns), for the request layer.
 *
 * Modes, fixed at start-up by users_file:
 *   - no users file: every client is anonymous and may do everything.
 *     auth_init() refuses to start on a listener that is not loopback
 *     unless allow_anonymous says so: a broker reachable from other
 *     machines must not be open by accident.
 *   - a users file: a client authenticates with SCRAM, or is taken for
 *     the file's "anonymous" entry if there is one, else refused.
 *
 * The handshake (PROTOCOL.md, section 4): auth_hello() on HELLO, then
 * auth_continue() on AUTH.  A failed proof, and a user that does not
 * exist (checked against a fake verifier, same work), are answered
 * E_DENIED only after a delay that doubles with each recent failure from
 * the same address, during which the connection is held and its input
 * ignored.
 *
 * Authorization: auth_check() answers E_DENIED for an operation the user
 * may not do; its decisions are cached per connection and topic, and the
 * cache is dropped when SIGHUP reloads the users file (auth_reload()),
 * so a connection keeps its user and gets the new permissions on its next
 * operation.
 *
 * Errors: -errno, logged.
 */
#ifndef FERRY_BROKER_AUTH_H
#define FERRY_BROKER_AUTH_H

#include <stdint.h>

#include "codec.h"
#include "users.h"

struct core;
struct conn;
struct auth_conn;

/* Load users_file and check the listener policy.  0 or -errno
 * (the reason logged in one line). */
int auth_init(struct core *b);
void auth_fini(struct core *b);

/* Re-read users_file; on any error keep the old set and log why.
 * 0 or -errno. */
int auth_reload(struct core *b);

/* Why a login was refused (ferry_auth_failures_total's cause label). */
enum auth_fail {
	AUTH_FAIL_CREDENTIALS,	/* wrong password, or no such user */
	AUTH_FAIL_ANONYMOUS,	/* no credentials, no "anonymous" entry */
	AUTH_FAIL_NO_USERS,	/* credentials, but no users_file */
	AUTH_FAIL_MECHANISM,	/* a mechanism other than SCRAM-SHA-256 */
	AUTH_FAIL_BUSY,		/* LOGINS_PER_ADDR exchanges under way */
	AUTH_FAIL_MALFORMED,	/* a SCRAM message that does not parse */
	AUTH_FAIL_NCAUSES
};

/* Per cause: its label and the mechanism the client tried. */
extern const char *const auth_fail_cause[AUTH_FAIL_NCAUSES];
extern const char *const auth_fail_mech[AUTH_FAIL_NCAUSES];

struct auth_stats {
	uint64_t failures[AUTH_FAIL_NCAUSES];	/* logins refused */
	uint64_t denied;	/* operations refused E_DENIED by the ACL */
};
/* Since start; zeros without auth_init(). */
void auth_get_stats(const struct core *b, struct auth_stats *st);

/* What the handshake step did. */
enum auth_step {
	AUTH_DONE,	/* authenticated (or anonymous): send WELCOME */
	AUTH_PENDING,	/* a CHALLENGE was sent: wait for AUTH */
	AUTH_FAILED,	/* an error was sent or will be: stop here */
};

/*
 * HELLO: start SCRAM if it names a mechanism, else take the client for
 * anonymous if allowed.  AUTH: finish SCRAM.  On AUTH_DONE, *sasl is the
 * server-final message for WELCOME (empty for anonymous; valid until the
 * next call on c) and *user the user name ("" for full anonymous rights).
 */
enum auth_step auth_hello(struct conn *c, const struct fy_frame *f,
    struct fy_str *sasl, struct fy_str *user);
enum auth_step auth_continue(struct conn *c, const struct fy_frame *f,
    struct fy_str *sasl, struct fy_str *user);

/* 1 while a failed login waits out its delay: ignore the client. */
int auth_failing(const struct conn *c);

/* The connection ends: free its state (conn's closing callback). */
void auth_conn_free(struct conn *c);

/* Operations that need a right. */
enum auth_op {
	AUTH_PUB = USERS_PUB,	/* publish to the topic */
	AUTH_SUB = USERS_SUB,	/* subscribe to it, or inspect it */
	AUTH_ADMIN,		/* DELETE, targeted PUB, TRACE, STATS of
				   every topic */
};

/*
 * 0 if c may do op on topic (ignored for AUTH_ADMIN); else 1, after
 * answering ERR E_DENIED (with rid) and logging it, at most once per
 * connection and topic and a few lines a second in all.
 */
int auth_check(struct conn *c, uint64_t rid, enum auth_op op,
    struct fy_str topic);

#endif
