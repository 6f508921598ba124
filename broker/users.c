/*
 * users.c - the users file: parse, look up, change, write back atomically.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pattern.h"
#include "users.h"

#define VERIFIER_PREFIX "SCRAM-SHA-256$"

/* What starts the list of patterns for an op on a line. */
static const char *const op_key[2] = { " pub=", " sub=" };

static void __attribute__((format(printf, 3, 4)))
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void
entry_fini(struct users_entry *e)
{
	uint32_t op, i;

	for (op = 0; op < 2; op++) {
		for (i = 0; i < e->npats[op]; i++)
			free(e->pats[op][i].pat);
		free(e->pats[op]);
	}
	free(e->name);
	memset(e, 0, sizeof(*e));
}

struct users *
users_new(void)
{
	return calloc(1, sizeof(struct users));
}

void
users_free(struct users *u)
{
	uint32_t i;

	if (u == NULL)
		return;
	for (i = 0; i < u->n; i++) {
		free(u->l[i].text);
		entry_fini(&u->l[i].e);
	}
	free(u->l);
	free(u);
}

static struct users_line *
push_line(struct users *u)
{
	struct users_line *l;
	uint32_t cap;

	if (u->n == u->cap) {
		cap = u->cap ? 2 * u->cap : 16;
		l = realloc(u->l, cap * sizeof(*l));
		if (l == NULL)
			return NULL;
		u->l = l;
		u->cap = cap;
	}
	l = &u->l[u->n++];
	memset(l, 0, sizeof(*l));
	return l;
}

/* "SCRAM-SHA-256$ITER:SALT$STOREDKEY:SERVERKEY" -> v. */
static int
parse_verifier(const char *s, struct fy_scram_verifier *v)
{
	const char *p = s + strlen(VERIFIER_PREFIX), *colon, *dollar,
	    *colon2;
	char *end;
	unsigned long iter;
	int n;

	memset(v, 0, sizeof(*v));
	if (strncmp(s, VERIFIER_PREFIX, strlen(VERIFIER_PREFIX)) != 0)
		return -1;
	if (*p < '1' || *p > '9')
		return -1;
	iter = strtoul(p, &end, 10);
	if (*end != ':' || iter < FY_SCRAM_ITER_MIN ||
	    iter > FY_SCRAM_ITER_MAX)
		return -1;
	colon = end;
	dollar = strchr(colon, '$');
	if (dollar == NULL)
		return -1;
	colon2 = strchr(dollar, ':');
	if (colon2 == NULL)
		return -1;
	n = fy_b64_decode(v->salt, sizeof(v->salt), colon + 1,
	    (size_t)(dollar - colon - 1));
	if (n <= 0)
		return -1;
	v->salt_len = (uint32_t)n;
	v->iter = (uint32_t)iter;
	if (fy_b64_decode(v->stored_key, sizeof(v->stored_key), dollar + 1,
	    (size_t)(colon2 - dollar - 1)) != FY_SCRAM_KEY_LEN ||
	    fy_b64_decode(v->server_key, sizeof(v->server_key), colon2 + 1,
	    strlen(colon2 + 1)) != FY_SCRAM_KEY_LEN)
		return -1;
	return 0;
}

/* Add "PATTERN" or "!PATTERN" to e's list for op. */
static int
add_pat(struct users_entry *e, enum users_op op, const char *s,
    size_t len, char *err, size_t errlen)
{
	struct users_pat *p;
	int deny = len > 0 && s[0] == '!';

	if (deny) {
		s++;
		len--;
	}
	if (!pattern_valid(s, len)) {
		seterr(err, errlen, "invalid topic pattern \"%.*s\" (segments "
		    "of A-Z a-z 0-9 - _ separated by '.', '*' for one "
		    "segment, '>' last for the rest)", (int)len, s);
		return -EINVAL;
	}
	p = realloc(e->pats[op], (e->npats[op] + 1) * sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	e->pats[op] = p;
	p = &p[e->npats[op]];
	p->pat = strndup(s, len);
	if (p->pat == NULL)
		return -ENOMEM;
	p->deny = (uint8_t)deny;
	e->npats[op]++;
	return 0;
}

/* One line, NUL-terminated and without its newline, into l.  A line that
 * is blank or a comment keeps only its text. */
static int
parse_line(struct users *u, struct users_line *l, char *line, char *err,
    size_t errlen)
{
	struct users_entry *e = &l->e;
	char *tok, *save = NULL, *p, *comma;
	int r, n = 0;
	enum users_op op;

	p = line + strspn(line, " \t\r");
	if (*p == '\0' || *p == '#') {
		l->text = strdup(line);
		return l->text ? 0 : -ENOMEM;
	}
	for (tok = strtok_r(p, " \t\r", &save); tok != NULL;
	    tok = strtok_r(NULL, " \t\r", &save), n++) {
		if (n == 0) {
			if (!fy_scram_user_valid(tok, strlen(tok))) {
				seterr(err, errlen, "invalid user name \"%.64s"
				    "\" (1..64 of A-Z a-z 0-9 . _ - @)", tok);
				return -EINVAL;
			}
			if (users_find(u, tok) != NULL) {
				seterr(err, errlen, "user \"%s\" appears "
				    "twice", tok);
				return -EINVAL;
			}
			if ((e->name = strdup(tok)) == NULL)
				return -ENOMEM;
			continue;
		}
		if (n == 1) {
			if (strcmp(tok, "-") == 0)
				continue;
			if (strcmp(e->name, USERS_ANONYMOUS) == 0) {
				seterr(err, errlen, "the \"" USERS_ANONYMOUS
				    "\" entry cannot have a password: write "
				    "'-'");
				return -EINVAL;
			}
			if (parse_verifier(tok, &e->v) != 0) {
				seterr(err, errlen, "invalid verifier for "
				    "\"%s\" (expected " VERIFIER_PREFIX
				    "ITER:SALT$STOREDKEY:SERVERKEY or '-'; "
				    "`ferry user add` writes it)", e->name);
				return -EINVAL;
			}
			e->has_verifier = 1;
			continue;
		}
		if (strcmp(tok, "admin") == 0) {
			e->admin = 1;
			continue;
		}
		if (strncmp(tok, "pub=", 4) == 0)
			op = USERS_PUB;
		else if (strncmp(tok, "sub=", 4) == 0)
			op = USERS_SUB;
		else {
			seterr(err, errlen, "unknown field \"%.64s\" (expected "
			    "pub=PATTERNS, sub=PATTERNS or admin)", tok);
			return -EINVAL;
		}
		for (p = tok + 4; ; p = comma + 1) {
			comma = strchr(p, ',');
			r = add_pat(e, op, p, comma ? (size_t)(comma - p) :
			    strlen(p), err, errlen);
			if (r)
				return r;
			if (comma == NULL)
				break;
		}
	}
	if (n < 2) {
		seterr(err, errlen, "user \"%s\" has no verifier (write '-' "
		    "for none)", e->name);
		return -EINVAL;
	}
	return 0;
}

int
users_parse(const char *text, size_t len, const char *path,
    struct users **out, char *err, size_t errlen)
{
	struct users *u = users_new();
	struct users_line *l;
	const char *p = text, *end = text + len, *nl;
	char *line = NULL, why[256];
	uint32_t lineno = 0;
	size_t n;
	int r = 0;

	if (u == NULL)
		return -ENOMEM;
	while (p < end) {
		lineno++;
		nl = memchr(p, '\n', (size_t)(end - p));
		n = (size_t)((nl ? nl : end) - p);
		if (n > USERS_LINE_MAX || memchr(p, '\0', n) != NULL) {
			seterr(err, errlen, "%s:%u: line too long or not text",
			    path, lineno);
			r = -EINVAL;
			break;
		}
		line = strndup(p, n);
		l = line ? push_line(u) : NULL;
		if (l == NULL) {
			r = -ENOMEM;
			break;
		}
		why[0] = '\0';
		r = parse_line(u, l, line, why, sizeof(why));
		if (r) {
			if (r == -EINVAL)
				seterr(err, errlen, "%s:%u: %s", path, lineno,
				    why);
			break;
		}
		free(line);
		line = NULL;
		p = nl ? nl + 1 : end;
	}
	free(line);
	if (r) {
		users_free(u);
		return r;
	}
	*out = u;
	return 0;
}

int
users_load(const char *path, struct users **out, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	ssize_t n;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		seterr(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) != 0) {
		r = -errno;
		seterr(err, errlen, "%s: %s", path, strerror(-r));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > USERS_FILE_MAX) {
		r = -EINVAL;
		seterr(err, errlen, "%s: not a regular file of at most %d "
		    "bytes", path, USERS_FILE_MAX);
		goto out;
	}
	if (st.st_mode & 007) {
		r = -EPERM;
		seterr(err, errlen, "%s: permissions %04o are too open: others "
		    "may read the verifiers; run chmod 600 %s", path,
		    (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		r = -ENOMEM;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			seterr(err, errlen, "%s: %s", path, strerror(-r));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	r = users_parse(buf, got, path, out, err, errlen);
out:
	free(buf);
	close(fd);
	return r;
}

void
users_pats_format(const struct users_entry *e, enum users_op op, char *buf,
    size_t size)
{
	size_t at = 0;
	uint32_t i;
	int n;

	if (size == 0)
		return;
	buf[0] = '\0';
	if (e->npats[op] == 0) {
		snprintf(buf, size, "-");
		return;
	}
	for (i = 0; i < e->npats[op] && at < size; i++) {
		n = snprintf(buf + at, size - at, "%s%s%s", i ? "," : "",
		    e->pats[op][i].deny ? "!" : "", e->pats[op][i].pat);
		if (n < 0)
			break;
		at += (size_t)n;
	}
}

/* The entry as one line (no newline) to f. */
static void
write_entry(FILE *f, const struct users_entry *e)
{
	const struct fy_scram_verifier *v = &e->v;
	char salt[4 * (FY_SCRAM_SALT_MAX / 3 + 1) + 1], sk[64], srv[64];
	uint32_t op, i;

	fprintf(f, "%s ", e->name);
	if (e->has_verifier) {
		fy_b64_encode(salt, sizeof(salt), v->salt, v->salt_len);
		fy_b64_encode(sk, sizeof(sk), v->stored_key, FY_SCRAM_KEY_LEN);
		fy_b64_encode(srv, sizeof(srv), v->server_key,
		    FY_SCRAM_KEY_LEN);
		fprintf(f, VERIFIER_PREFIX "%u:%s$%s:%s", v->iter, salt, sk,
		    srv);
	} else {
		fputc('-', f);
	}
	for (op = 0; op < 2; op++) {
		for (i = 0; i < e->npats[op]; i++)
			fprintf(f, "%s%s%s", i ? "," : op_key[op],
			    e->pats[op][i].deny ? "!" : "",
			    e->pats[op][i].pat);
	}
	if (e->admin)
		fputs(" admin", f);
}

int
users_save(const struct users *u, const char *path, char *err,
    size_t errlen)
{
	char *tmp = NULL, *dup = NULL, *dir;
	FILE *f = NULL;
	uint32_t i;
	int fd = -1, dfd, r;

	if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
		return -ENOMEM;
	/* mkstemp creates it 0600; fchmod says so explicitly, whatever
	 * the umask. */
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0 || fchmod(fd, 0600) != 0) {
		r = -errno;
		seterr(err, errlen, "%s: %s", tmp, strerror(-r));
		goto fail;
	}
	f = fdopen(fd, "w");
	if (f == NULL) {
		r = -errno;
		goto fail;
	}
	fd = -1;	/* f owns it */
	for (i = 0; i < u->n; i++) {
		if (u->l[i].e.name != NULL) {
			write_entry(f, &u->l[i].e);
			fputc('\n', f);
		} else if (u->l[i].text != NULL) {
			fprintf(f, "%s\n", u->l[i].text);
		}
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0 || ferror(f)) {
		r = -errno;
		seterr(err, errlen, "%s: %s", tmp, strerror(-r));
		goto fail;
	}
	r = fclose(f);
	f = NULL;
	if (r != 0 || rename(tmp, path) != 0) {
		r = -errno;
		seterr(err, errlen, "%s: %s", path, strerror(-r));
		goto fail;
	}
	/* The rename is durable once the directory is. */
	dup = strdup(path);
	dir = dup ? dirname(dup) : NULL;
	dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(dup);
	free(tmp);
	return 0;
fail:
	if (f != NULL)
		fclose(f);
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	free(tmp);
	return r ? r : -EIO;
}

const struct users_entry *
users_find(const struct users *u, const char *name)
{
	uint32_t i;

	if (u == NULL)
		return NULL;
	for (i = 0; i < u->n; i++)
		if (u->l[i].e.name && strcmp(u->l[i].e.name, name) == 0)
			return &u->l[i].e;
	return NULL;
}

int
users_add(struct users *u, const char *name,
    const struct fy_scram_verifier *v, const char *const *pub, size_t npub,
    const char *const *sub, size_t nsub, int admin, char *err,
    size_t errlen)
{
	struct users_line *l;
	struct users_entry e;
	size_t i;
	int r = 0;

	if (!fy_scram_user_valid(name, strlen(name))) {
		seterr(err, errlen, "invalid user name \"%.64s\" (1..64 of "
		    "A-Z a-z 0-9 . _ - @)", name);
		return -EINVAL;
	}
	if (users_find(u, name) != NULL) {
		seterr(err, errlen, "user \"%s\" exists", name);
		return -EEXIST;
	}
	if (v != NULL && strcmp(name, USERS_ANONYMOUS) == 0) {
		seterr(err, errlen, "the \"" USERS_ANONYMOUS "\" entry cannot "
		    "have a password");
		return -EINVAL;
	}
	memset(&e, 0, sizeof(e));
	if (v != NULL) {
		e.v = *v;
		e.has_verifier = 1;
	}
	e.admin = admin != 0;
	for (i = 0; r == 0 && i < npub; i++)
		r = add_pat(&e, USERS_PUB, pub[i], strlen(pub[i]), err, errlen);
	for (i = 0; r == 0 && i < nsub; i++)
		r = add_pat(&e, USERS_SUB, sub[i], strlen(sub[i]), err, errlen);
	if (r == 0 && (e.name = strdup(name)) == NULL)
		r = -ENOMEM;
	if (r == 0 && (l = push_line(u)) == NULL)
		r = -ENOMEM;
	if (r) {
		entry_fini(&e);
		return r;
	}
	l->e = e;
	return 0;
}

int
users_passwd(struct users *u, const char *name,
    const struct fy_scram_verifier *v)
{
	struct users_entry *e = (struct users_entry *)users_find(u, name);

	if (e == NULL)
		return -ENOENT;
	if (strcmp(name, USERS_ANONYMOUS) == 0)
		return -EINVAL;
	e->v = *v;
	e->has_verifier = 1;
	return 0;
}

int
users_del(struct users *u, const char *name)
{
	uint32_t i;

	for (i = 0; i < u->n; i++) {
		if (u->l[i].e.name && strcmp(u->l[i].e.name, name) == 0) {
			entry_fini(&u->l[i].e);
			free(u->l[i].text);
			memmove(&u->l[i], &u->l[i + 1],
			    (u->n - i - 1) * sizeof(u->l[0]));
			u->n--;
			return 0;
		}
	}
	return -ENOENT;
}

int
users_allowed(const struct users_entry *e, enum users_op op,
    const char *topic, size_t len)
{
	uint32_t i;
	int allow = 0;

	if (e->admin)
		return 1;
	for (i = 0; i < e->npats[op]; i++) {
		if (!pattern_match(e->pats[op][i].pat, topic, len))
			continue;
		if (e->pats[op][i].deny)
			return 0;	/* a deny wins wherever it is */
		allow = 1;
	}
	return allow;
}
