/*
 * log.h - broker logging: logfmt lines on stderr, or journal entries with
 * fields under systemd.
 *
 * Nothing is logged per message above LOG_DEBUG.  Warnings and errors carry
 * file:line; log_syswarn() appends strerror(errno).
 */
#ifndef FERRY_BROKER_LOG_H
#define FERRY_BROKER_LOG_H

enum log_level {
	LOG_ERROR = 0,
	LOG_WARN = 1,
	LOG_INFO = 2,
	LOG_DEBUG = 3,
};

extern int log_level;

/* Parse "error", "warn", "info", "debug"; -1 if unknown. */
int log_level_parse(const char *s);
/* The name log_level_parse() takes for level. */
const char *log_level_name(int level);

void log_msg(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void log_sysmsg(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * With structured fields: kv is "key=value ..." (values without spaces or
 * quotes: topic and group names, peers, numbers), added to the line as is
 * and, under systemd, as journal fields FERRY_KEY=value.  At most
 * LOG_KV_MAX of them.
 */
#define LOG_KV_MAX 6
void log_kvmsg(int level, const char *file, int line, const char *kv,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * The usual fields, "topic=T group=G peer=P", each only when not NULL (or
 * empty), for log_*_kv(): in a buffer of the calling thread's, valid until
 * its next log_kv().
 */
const char *log_kv(const char *topic, const char *group, const char *peer);

/* Where journal entries go: sd_journal_sendv(), or fn (tests); NULL
 * restores the default. */
struct iovec;
void log_set_journal_sender(int (*fn)(const struct iovec *iov, int n));

#define log_error(...) log_msg(LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_syswarn(...) log_sysmsg(LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...) \
	do { if (log_level >= LOG_INFO) \
		log_msg(LOG_INFO, __FILE__, __LINE__, __VA_ARGS__); } while (0)
#define log_info_kv(kv, ...) \
	do { if (log_level >= LOG_INFO) \
		log_kvmsg(LOG_INFO, __FILE__, __LINE__, kv, __VA_ARGS__); \
	} while (0)
#define log_warn_kv(kv, ...) \
	log_kvmsg(LOG_WARN, __FILE__, __LINE__, kv, __VA_ARGS__)
#define log_error_kv(kv, ...) \
	log_kvmsg(LOG_ERROR, __FILE__, __LINE__, kv, __VA_ARGS__)
/* kv is evaluated only at debug level: a log_kv() there costs nothing
 * otherwise. */
#define log_debug_kv(kv, ...) \
	do { if (log_level >= LOG_DEBUG) \
		log_kvmsg(LOG_DEBUG, __FILE__, __LINE__, kv, __VA_ARGS__); \
	} while (0)
#define log_debug(...) \
	do { if (log_level >= LOG_DEBUG) \
		log_msg(LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__); } while (0)

#endif
