/*
 * log.c - one line per call to stderr, in a single write so that lines from
 * the loop and from a helper thread never interleave mid-line.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"

int log_level = LOG_INFO;

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

static void __attribute__((format(printf, 5, 0)))
log_vemit(int level, const char *file, int line, const char *sys,
    const char *fmt, va_list ap)
{
	char msg[2048];
	char where[128] = "";
	const char *base;
	int n;

	if (level < LOG_ERROR)
		level = LOG_ERROR;
	if (level > LOG_DEBUG)
		level = LOG_DEBUG;
	if (level > log_level)
		return;

	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		snprintf(msg, sizeof(msg), "(unformattable message: %s)", fmt);
	else if ((size_t)n >= sizeof(msg))
		memcpy(msg + sizeof(msg) - 4, "...", 4);
	sanitize(msg);

	if (level <= LOG_WARN && file != NULL) {
		/* meson passes "../broker/x.c": the base name is enough. */
		base = strrchr(file, '/');
		snprintf(where, sizeof(where), " (%s:%d)",
		    base != NULL ? base + 1 : file, line);
	}

	/*
	 * stderr is unbuffered, and glibc formats a whole fprintf() into a
	 * temporary buffer for such streams: one call is one write(2).
	 * journald already records our name and pid, so there the line
	 * carries only its priority.
	 */
	if (stderr_is_journal())
		fprintf(stderr, "%s%s%s%s%s\n", level_prefixes[level], msg,
		    sys != NULL ? ": " : "", sys != NULL ? sys : "", where);
	else
		fprintf(stderr, "ferryd[%ld]: %s: %s%s%s%s\n",
		    (long)getpid(), level_names[level], msg,
		    sys != NULL ? ": " : "", sys != NULL ? sys : "", where);
}

void
log_msg(int level, const char *file, int line, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vemit(level, file, line, NULL, fmt, ap);
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
	log_vemit(level, file, line, sys, fmt, ap);
	va_end(ap);
	errno = saved;
}
