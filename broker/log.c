/*
 * log.c - one line per call to stderr, in a single write so that lines from
 * the loop and from a helper thread never interleave mid-line: logfmt
 * (ts= level= msg= fields... err= src=), or under systemd one journal
 * entry with its fields (sd_journal_sendv).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
/* sd-journal.h brings <syslog.h>, whose LOG_INFO and LOG_DEBUG are
 * numbers of its own; ours (log.h) are the ones meant here. */
#undef LOG_INFO
#undef LOG_DEBUG

#include "log.h"

int log_level = LOG_INFO;

/* sd_journal_sendv(), or a test's stand-in (log_set_journal_sender). */
static int (*journal_send)(const struct iovec *iov, int n) =
    sd_journal_sendv;

static const char *const level_names[] = {
	[LOG_ERROR] = "ERROR",
	[LOG_WARN] = "WARN",
	[LOG_INFO] = "INFO",
	[LOG_DEBUG] = "DEBUG",
};

/* journald reads "<N>" at the start of a line as the syslog priority. */
static const char *const level_prefixes[] = {
	[LOG_ERROR] = SD_ERR,
	[LOG_WARN] = SD_WARNING,
	[LOG_INFO] = SD_INFO,
	[LOG_DEBUG] = SD_DEBUG,
};

const char *
log_level_name(int level)
{
	static const char *const names[] = { "error", "warn", "info",
	    "debug" };

	return level >= LOG_ERROR && level <= LOG_DEBUG ? names[level] : "?";
}

int
log_level_parse(const char *s)
{
	int i;

	if (s == NULL)
		return -1;
	for (i = LOG_ERROR; i <= LOG_DEBUG; i++) {
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	}
	if (strcasecmp(s, "warning") == 0)
		return LOG_WARN;
	return -1;
}

/*
 * systemd sets JOURNAL_STREAM to the "device:inode" of the stream it
 * connected to stderr.  The variable is inherited by anything we spawn or
 * by a shell that redirects stderr, so compare it with what fd 2 really is
 * (as systemd.exec(5) advises) instead of trusting its presence.  Checked
 * on every line: cheap next to the write, and right even after stderr is
 * redirected.
 */
static int
stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	int n = 0;

	if (e == NULL || *e == '\0')
		return 0;
	if (sscanf(e, "%llu:%llu%n", &dev, &ino, &n) != 2 || e[n] != '\0')
		return 0;
	if (fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

/*
 * Messages may quote client-supplied text (names, NACK errors): a newline
 * or escape sequence in it must not forge log lines or restyle a terminal.
 */
static void
sanitize(char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
	}
}

/* Append src to dst[*n..len) as a logfmt value: bare if it needs no
 * quotes, else quoted with '"' and '\\' escaped. */
static void
put_value(char *dst, size_t len, size_t *n, const char *src)
{
	int quote = *src == '\0' || strpbrk(src, " \"=\\") != NULL;

	if (quote && *n + 1 < len)
		dst[(*n)++] = '"';
	for (; *src != '\0' && *n + 2 < len; src++) {
		if (quote && (*src == '"' || *src == '\\'))
			dst[(*n)++] = '\\';
		dst[(*n)++] = *src;
	}
	if (quote && *n + 1 < len)
		dst[(*n)++] = '"';
	dst[*n] = '\0';
}

static void
put_str(char *dst, size_t len, size_t *n, const char *src)
{
	int w = snprintf(dst + *n, len - *n, "%s", src);

	if (w > 0)
		*n += (size_t)w < len - *n ? (size_t)w : len - *n - 1;
}

/*
 * Under systemd: one journal entry whose fields journalctl can filter on
 * (journalctl -u ferryd FERRY_TOPIC=orders).  kv's "key=value" words
 * become FERRY_KEY=value.  0, or -1 if the journal did not take it.
 */
static int
emit_journal(int level, const char *file, int line, const char *msg,
    const char *sys, const char *kv)
{
	static const int prio[] = { 3, 4, 6, 7 };	/* err .. debug */
	char f[LOG_KV_MAX][160], m[2300], pr[16], cf[160], cl[32], er[300];
	struct iovec iov[LOG_KV_MAX + 6];
	int n = 0, k = 0;
	const char *p;

	snprintf(m, sizeof(m), "MESSAGE=%s%s%s", msg, sys ? ": " : "",
	    sys ? sys : "");
	iov[n++] = (struct iovec){ m, strlen(m) };
	snprintf(pr, sizeof(pr), "PRIORITY=%d", prio[level]);
	iov[n++] = (struct iovec){ pr, strlen(pr) };
	if (file != NULL) {
		p = strrchr(file, '/');
		snprintf(cf, sizeof(cf), "CODE_FILE=%s", p ? p + 1 : file);
		snprintf(cl, sizeof(cl), "CODE_LINE=%d", line);
		iov[n++] = (struct iovec){ cf, strlen(cf) };
		iov[n++] = (struct iovec){ cl, strlen(cl) };
	}
	if (sys != NULL) {
		snprintf(er, sizeof(er), "FERRY_ERROR=%s", sys);
		iov[n++] = (struct iovec){ er, strlen(er) };
	}
	for (p = kv; p && *p && k < LOG_KV_MAX; k++) {
		size_t wl = strcspn(p, " "), kl = strcspn(p, "="), i, o;

		if (kl < wl) {
			memcpy(f[k], "FERRY_", 6);
			for (i = 0, o = 6; i < wl && o < sizeof(f[k]) - 1;
			    i++, o++)
				f[k][o] = i < kl ? (char)toupper(
				    (unsigned char)p[i]) : p[i];
			iov[n++] = (struct iovec){ f[k], o };
		}
		p += wl;
		while (*p == ' ')
			p++;
	}
	return journal_send(iov, n) < 0 ? -1 : 0;
}

static void __attribute__((format(printf, 6, 0)))
log_vemit(int level, const char *file, int line, const char *sys,
    const char *kv, const char *fmt, va_list ap)
{
	static const char *const lower[] = {
		[LOG_ERROR] = "error", [LOG_WARN] = "warn",
		[LOG_INFO] = "info", [LOG_DEBUG] = "debug",
	};
	char msg[2048], out[4096], where[128] = "", ts[40];
	const char *base;
	struct timespec now;
	struct tm tm;
	size_t n = 0;
	int r;

	if (level < LOG_ERROR)
		level = LOG_ERROR;
	if (level > LOG_DEBUG)
		level = LOG_DEBUG;
	if (level > log_level)
		return;

	r = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (r < 0)
		snprintf(msg, sizeof(msg), "(unformattable message: %s)", fmt);
	else if ((size_t)r >= sizeof(msg))
		memcpy(msg + sizeof(msg) - 4, "...", 4);
	sanitize(msg);

	if (stderr_is_journal()) {
		char kvs[512] = "";

		if (kv) {
			snprintf(kvs, sizeof(kvs), "%s", kv);
			sanitize(kvs);
		}
		if (emit_journal(level, file, line, msg, sys, kv ? kvs :
		    NULL) == 0)
			return;
		/*
		 * No journal socket: the stream still reaches journald, and
		 * it reads "<N>" at the start of a line as the priority.
		 * It records our name and pid itself.
		 */
		if (level <= LOG_WARN && file != NULL) {
			base = strrchr(file, '/');
			snprintf(where, sizeof(where), " (%s:%d)",
			    base != NULL ? base + 1 : file, line);
		}
		fprintf(stderr, "%s%s%s%s%s%s%s\n", level_prefixes[level], msg,
		    sys != NULL ? ": " : "", sys != NULL ? sys : "",
		    kv ? " " : "", kv ? kvs : "", where);
		return;
	}

	/* logfmt: ts= level= msg= [fields] [err=] [src=] */
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	put_str(out, sizeof(out), &n, "ts=");
	put_str(out, sizeof(out), &n, ts);
	snprintf(ts, sizeof(ts), ".%03ldZ level=", now.tv_nsec / 1000000);
	put_str(out, sizeof(out), &n, ts);
	put_str(out, sizeof(out), &n, lower[level]);
	put_str(out, sizeof(out), &n, " msg=");
	put_value(out, sizeof(out), &n, msg);
	if (kv && *kv) {
		char kvs[512];

		snprintf(kvs, sizeof(kvs), "%s", kv);
		sanitize(kvs);
		put_str(out, sizeof(out), &n, " ");
		put_str(out, sizeof(out), &n, kvs);
	}
	if (sys != NULL) {
		put_str(out, sizeof(out), &n, " err=");
		put_value(out, sizeof(out), &n, sys);
	}
	if (level <= LOG_WARN && file != NULL) {
		/* meson passes "../broker/x.c": the base name is enough. */
		base = strrchr(file, '/');
		snprintf(where, sizeof(where), " src=%s:%d",
		    base != NULL ? base + 1 : file, line);
		put_str(out, sizeof(out), &n, where);
	}
	/*
	 * stderr is unbuffered, and glibc formats a whole fprintf() into a
	 * temporary buffer for such streams: one call is one write(2).
	 */
	fprintf(stderr, "%s\n", out);
}

void
log_msg(int level, const char *file, int line, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vemit(level, file, line, NULL, NULL, fmt, ap);
	va_end(ap);
	errno = saved;	/* callers may log, then still inspect errno */
}

void
log_sysmsg(int level, const char *file, int line, const char *fmt, ...)
{
	int saved = errno;	/* formatting the message may clobber it */
	char buf[256];
	const char *sys;
	va_list ap;

	sys = strerror_r(saved, buf, sizeof(buf));
	va_start(ap, fmt);
	log_vemit(level, file, line, sys, NULL, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_kvmsg(int level, const char *file, int line, const char *kv,
    const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vemit(level, file, line, NULL, kv, fmt, ap);
	va_end(ap);
	errno = saved;
}

#define LOG_KV_LEN 512		/* two names of FY_NAME_MAX, a peer */

const char *
log_kv(const char *topic, const char *group, const char *peer)
{
	static __thread char buf[LOG_KV_LEN];
	size_t n = 0;

	buf[0] = '\0';
	if (topic && *topic)
		n += (size_t)snprintf(buf + n, LOG_KV_LEN - n, "topic=%s",
		    topic);
	if (group && *group && n < LOG_KV_LEN)
		n += (size_t)snprintf(buf + n, LOG_KV_LEN - n, "%sgroup=%s",
		    n ? " " : "", group);
	if (peer && *peer && n < LOG_KV_LEN)
		snprintf(buf + n, LOG_KV_LEN - n, "%speer=%s", n ? " " : "",
		    peer);
	return buf;
}

void
log_set_journal_sender(int (*fn)(const struct iovec *iov, int n))
{
	journal_send = fn ? fn : sd_journal_sendv;
}
