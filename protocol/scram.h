/*
 * scram.h - SCRAM-SHA-256 (RFC 5802, RFC 7677), both sides, as the ferry
 * handshake carries it (PROTOCOL.md, section 4).
 *
 * The messages are the RFC's text messages, byte for byte; this module
 * builds and parses them and does the key arithmetic with OpenSSL's
 * PBKDF2, HMAC, SHA-256 and CRYPTO_memcmp.  No I/O, no allocation: every
 * state is a fixed-size struct the caller owns, every output goes to a
 * caller's buffer of FY_SCRAM_MSG_MAX bytes.  Nonces are inputs (tests feed
 * the RFC's); fy_scram_nonce() draws a fresh one from RAND_bytes.
 *
 * Simplifications, all refused rather than misread: no channel binding
 * (gs2 header "n,," only; "y" and "p=" are refused), no authzid, user names
 * limited to FY_SCRAM_USER_MAX bytes of [A-Za-z0-9._@-] (so no saslname
 * escaping is ever needed), passwords used as given (no SASLprep: a
 * non-ASCII password must be typed in the same normalisation each time).
 *
 * Errors: FY_OK; FY_EPROTO for a malformed or out-of-order message, a
 * nonce that does not extend ours, an iteration count out of range;
 * FY_EAUTH for a proof or server signature that does not verify;
 * FY_ENOMEM when OpenSSL fails.
 */
#ifndef FERRY_PROTOCOL_SCRAM_H
#define FERRY_PROTOCOL_SCRAM_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define FY_SCRAM_MECH "SCRAM-SHA-256"
#define FY_SCRAM_KEY_LEN 32		/* SHA-256 output */
#define FY_SCRAM_SALT_MAX 64		/* bytes */
#define FY_SCRAM_USER_MAX 64		/* bytes */
#define FY_SCRAM_NONCE_MAX 64		/* bytes, each side's part */
#define FY_SCRAM_MSG_MAX 512		/* any message, NUL included */
/* Iterations a client accepts: RFC 7677 asks for at least 4096; the top
 * keeps a hostile server from making the client spin for minutes. */
#define FY_SCRAM_ITER_MIN 4096
#define FY_SCRAM_ITER_MAX 10000000
#define FY_SCRAM_ITER_DEFAULT 4096

/* What the server stores for a user instead of the password. */
struct fy_scram_verifier {
	uint8_t salt[FY_SCRAM_SALT_MAX];
	uint32_t salt_len;
	uint32_t iter;
	uint8_t stored_key[FY_SCRAM_KEY_LEN];	/* H(ClientKey) */
	uint8_t server_key[FY_SCRAM_KEY_LEN];
};

/* Derive the verifier of a password (PBKDF2 with iter rounds).
 * FY_EPROTO if salt_len is 0 or above FY_SCRAM_SALT_MAX or iter is 0. */
int fy_scram_verifier_make(struct fy_scram_verifier *v, const char *pw,
    size_t pw_len, const uint8_t *salt, size_t salt_len, uint32_t iter);

/* A printable nonce of len (1..FY_SCRAM_NONCE_MAX) characters from
 * RAND_bytes, NUL-terminated in buf[len]: base64 letters, never ','. */
int fy_scram_nonce(char *buf, size_t len);

/* 1 if name is a user name this module accepts (see above). */
int fy_scram_user_valid(const char *name, size_t len);

/* Base64 (RFC 4648, padded): used by the users file too.  encode writes a
 * NUL-terminated string and returns its length, or -1 if out is smaller
 * than 4 * ceil(len / 3) + 1.  decode returns the byte count, or -1 for
 * invalid text or if it would not fit in max bytes. */
int fy_b64_encode(char *out, size_t outsz, const uint8_t *in, size_t len);
int fy_b64_decode(uint8_t *out, size_t max, const char *in, size_t len);

enum fy_scram_state {
	FY_SCRAM_START = 0,
	FY_SCRAM_SENT_FIRST,	/* client: waiting for server-first */
	FY_SCRAM_GOT_FIRST,	/* server: client-first parsed, user known */
	FY_SCRAM_SENT_CHALLENGE, /* server: waiting for client-final */
	FY_SCRAM_SENT_FINAL,	/* client: waiting for server-final */
	FY_SCRAM_DONE,		/* verified */
	FY_SCRAM_FAILED,	/* any error: every later call refuses */
};

/*
 * Client side:
 *   fy_scram_client_first(): user + our nonce -> client-first-message;
 *   fy_scram_client_final(): password + server-first -> client-final
 *     (checks the nonce extends ours and the iteration count's range);
 *   fy_scram_client_verify(): server-final -> FY_OK only if the server
 *     proved it knows the verifier (mutual authentication).  A client
 *     MUST NOT treat the session as authenticated before that.
 */
struct fy_scram_client {
	int state;			/* enum fy_scram_state */
	char bare[FY_SCRAM_USER_MAX + FY_SCRAM_NONCE_MAX + 8]; /* first-bare */
	char nonce[2 * FY_SCRAM_NONCE_MAX + 1];	/* ours, then combined */
	char auth[3 * FY_SCRAM_MSG_MAX];	/* AuthMessage */
	uint8_t server_key[FY_SCRAM_KEY_LEN];
};

int fy_scram_client_first(struct fy_scram_client *c, const char *user,
    const char *cnonce, char *out);
int fy_scram_client_final(struct fy_scram_client *c, const char *pw,
    size_t pw_len, const char *sfirst, size_t len, char *out);
int fy_scram_client_verify(struct fy_scram_client *c, const char *sfinal,
    size_t len);
/* Wipe the keys; a finished or failed client holds nothing secret. */
void fy_scram_client_clear(struct fy_scram_client *c);

/*
 * Server side:
 *   fy_scram_server_first(): parse client-first, fill s->user;
 *   the caller looks up s->user's verifier (an unknown user gets a fake
 *     one, fy_scram_verifier_fake(), so that both paths do the same work);
 *   fy_scram_server_challenge(): verifier + our nonce -> server-first;
 *   fy_scram_server_final(): client-final -> FY_OK and server-final in
 *     out, or FY_EAUTH (wrong proof) / FY_EPROTO.
 */
struct fy_scram_server {
	int state;			/* enum fy_scram_state */
	char user[FY_SCRAM_USER_MAX + 1];
	char nonce[2 * FY_SCRAM_NONCE_MAX + 1];	/* client's, then combined */
	char auth[3 * FY_SCRAM_MSG_MAX];	/* AuthMessage, growing */
	struct fy_scram_verifier v;
};

int fy_scram_server_first(struct fy_scram_server *s, const char *cfirst,
    size_t len);
int fy_scram_server_challenge(struct fy_scram_server *s,
    const struct fy_scram_verifier *v, const char *snonce, char *out);
int fy_scram_server_final(struct fy_scram_server *s, const char *cfinal,
    size_t len, char *out);
void fy_scram_server_clear(struct fy_scram_server *s);

/* A verifier for a user that does not exist: salt derived from the user
 * name and a secret of the server's (so the same unknown name always gets
 * the same salt, as a real user would), keys random, so no proof passes. */
int fy_scram_verifier_fake(struct fy_scram_verifier *v, const char *user,
    const uint8_t *secret, size_t secret_len, uint32_t iter);

#endif
