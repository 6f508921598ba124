/*
 * log.h - broker logging to stderr (journald picks it up under systemd).
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

void log_msg(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void log_sysmsg(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_error(...) log_msg(LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_syswarn(...) log_sysmsg(LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...) \
	do { if (log_level >= LOG_INFO) \
		log_msg(LOG_INFO, __FILE__, __LINE__, __VA_ARGS__); } while (0)
#define log_debug(...) \
	do { if (log_level >= LOG_DEBUG) \
		log_msg(LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__); } while (0)

#endif
