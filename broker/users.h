/*
 * users.h - the users file: who may connect, and what each user may do.
 *
 * One user a line, fields separated by blanks, '#' starts a comment line:
 *
 *   NAME  VERIFIER  [pub=PATTERN,...]  [sub=PATTERN,...]  [admin]
 *
 *   alice SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey> pub=orders.>
 *   bob SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey> sub=a.*,!a.x admin
 *   anonymous - sub=public.>
 *
 * VERIFIER is PostgreSQL's spelling of a SCRAM-SHA-256 verifier
 * (iterations, base64 salt, base64 StoredKey and ServerKey), or "-" for a
 * user who cannot log in with a password (a client certificate maps to
 * it, or it is the "anonymous" entry).  Patterns are pattern.h's; one
 * starting with '!' denies, and a deny wins over any allow.  Nothing is
 * allowed that no pattern allows.  "admin" allows everything, including
 * DELETE, targeted publishes (dead-letter replay) and inspecting any
 * topic.  The entry named "anonymous" gives clients that do not
 * authenticate its permissions; without it every client must.
 *
 * The file keeps its comments and order through users_save(): lines that
 * are not entries are written back as they were read.
 *
 * Errors: -errno; parse errors are -EINVAL with "PATH:LINE: what" in err.
 */
#ifndef FERRY_BROKER_USERS_H
#define FERRY_BROKER_USERS_H

#include <stddef.h>
#include <stdint.h>

#include "scram.h"

#define USERS_ANONYMOUS "anonymous"
#define USERS_LINE_MAX 8192	/* bytes per line */
#define USERS_FILE_MAX (64 << 20)

enum users_op {
	USERS_PUB = 0,
	USERS_SUB = 1,
};

struct users_pat {
	char *pat;		/* owned, valid per pattern_valid() */
	uint8_t deny;		/* written with a leading '!' */
};

struct users_entry {
	char *name;		/* owned; NULL: this line is not an entry */
	uint8_t has_verifier;	/* 0: "-", no password login */
	uint8_t admin;
	struct fy_scram_verifier v;
	struct users_pat *pats[2];	/* by enum users_op, owned */
	uint32_t npats[2];
};

struct users_line {
	char *text;		/* owned: the line as read, for non-entries */
	struct users_entry e;
};

struct users {
	struct users_line *l;	/* owned */
	uint32_t n, cap;
};

/* Parse text[0..len); path only names the file in errors.  On success
 * *out is the caller's (users_free()). */
int users_parse(const char *text, size_t len, const char *path,
    struct users **out, char *err, size_t errlen);

/*
 * Read and parse path.  Refuses (-EPERM, with why in err) a file that
 * others may read or write (mode & 007), as ssh does for its keys: the
 * verifiers are as good as passwords for a dictionary attack.
 */
int users_load(const char *path, struct users **out, char *err,
    size_t errlen);

/* Write atomically: a temporary file in the same directory, mode 0600,
 * synced, then renamed over path. */
int users_save(const struct users *u, const char *path, char *err,
    size_t errlen);

/* An empty set (a file that does not exist yet, for `ferry user add`). */
struct users *users_new(void);
void users_free(struct users *u);

/* The entry named name, or NULL. */
const struct users_entry *users_find(const struct users *u,
    const char *name);

/*
 * Add a user (-EEXIST if present), or replace the verifier of one
 * (users_passwd, -ENOENT if absent), or remove one (users_del).  pats are
 * "PATTERN" or "!PATTERN" strings, copied; -EINVAL for an invalid name or
 * pattern, with why in err.
 */
int users_add(struct users *u, const char *name,
    const struct fy_scram_verifier *v, const char *const *pub, size_t npub,
    const char *const *sub, size_t nsub, int admin, char *err,
    size_t errlen);
int users_passwd(struct users *u, const char *name,
    const struct fy_scram_verifier *v);
int users_del(struct users *u, const char *name);

/* 1 if e may do op on topic[0..len): no deny pattern matches and an allow
 * pattern does, or e is admin. */
int users_allowed(const struct users_entry *e, enum users_op op,
    const char *topic, size_t len);

/* e's patterns for op as "a,!b" into buf (NUL-terminated, truncated to
 * size); "-" if none.  For `ferry user list` and logs. */
void users_pats_format(const struct users_entry *e, enum users_op op,
    char *buf, size_t size);

#endif
