/*
 * harness.h - run a real ferryd and the ferry CLI from Check tests.
 *
 * Every daemon listens on 127.0.0.1 with an ephemeral port (--port 0
 * --port-file) and a fresh temporary data directory, so tests never race
 * for ports and may run in parallel.  Every process started here is stopped
 * by its PID: ferryd_stop()/ferryd_kill() and proc_kill().  Paths to the
 * binaries come from the environment (FERRYD, FERRY), set by meson.
 */
#ifndef FERRY_TESTS_HARNESS_H
#define FERRY_TESTS_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "codec.h"

struct ferryd {
	pid_t pid;
	int port;
	char dir[256];		/* temporary; holds data/, port, log */
	char log[300];		/* ferryd's stderr */
	char *args[32];		/* extra arguments, kept for restarts */
	int nargs;
};

/*
 * Start ferryd with built-in defaults plus the NULL-terminated extra
 * arguments (e.g. "--ack-timeout", "1", NULL).  Fails the test (ck_abort)
 * if it does not report its port within 10 s.
 */
void ferryd_start(struct ferryd *d, ...);
/* What ferryd_start() does before starting: a fresh directory and the
 * arguments (a NULL-terminated list in ap), kept in d. */
void ferryd_vprepare(struct ferryd *d, va_list ap);

/* Start again on the same data directory with the same arguments. */
void ferryd_restart(struct ferryd *d);
/* SIGTERM, wait (10 s max, then SIGKILL); returns the exit status or -1. */
int ferryd_stop(struct ferryd *d);
/* SIGKILL and reap. */
void ferryd_kill(struct ferryd *d);
/* Stop if running and remove the directory. */
void ferryd_cleanup(struct ferryd *d);
/* 1 if ferryd's log contains needle, message text as written (the
 * logfmt quoting of a message, \" and \\, is undone to compare). */
int ferryd_log_has(const struct ferryd *d, const char *needle);

/* A child process with its stdout on a pipe. */
struct proc {
	pid_t pid;
	int out;		/* read end of its stdout, -1 once closed */
};

/*
 * Run the ferry CLI with port and arguments (NULL-terminated), feeding
 * stdin_data (may be NULL) and collecting stdout into *out (malloc'd, NUL
 * terminated; may be NULL).  Kills it after timeout_ms.  Returns its exit
 * status, or -1 if it was killed or crashed.
 */
int cli_run(int port, const char *stdin_data, char **out, int timeout_ms,
    ...);
/* Start the ferry CLI in the background (stdin from /dev/null). */
void cli_spawn(struct proc *p, int port, ...);
/* Read from p's stdout until n lines arrived or timeout; returns lines
 * read (appended to *buf, malloc'd). */
int proc_read_lines(struct proc *p, char **buf, size_t *len, int n,
    int timeout_ms);
void proc_signal(struct proc *p, int sig);
/* Kill (SIGKILL) and reap; returns the wait status. */
int proc_kill(struct proc *p);
/* Wait for exit up to timeout_ms; exit status, or -1 (then killed). */
int proc_wait(struct proc *p, int timeout_ms);

/* Raw protocol access for bad-input tests. */
int raw_connect(int port);		/* ck_abort on failure */
void raw_send(int fd, const void *p, size_t len);
void raw_send_frame(int fd, const struct fy_frame *f);
/*
 * Receive one frame within timeout_ms into *f (decoded with dec; valid
 * until the next call).  Returns 1, or 0 on EOF, -1 on timeout.
 */
int raw_recv_frame(int fd, struct fy_dec *dec, struct fy_frame *f,
    int timeout_ms);
/* Connect and complete the handshake. */
int raw_hello(int port, struct fy_dec *dec);

/* Milliseconds on a monotonic clock. */
uint64_t now_ms(void);

/* Count lines equal to line in text. */
int count_lines(const char *text, const char *line);

/* A field of /proc/PID/status in kB ("VmRSS", "VmHWM").  Fails the test if
 * it cannot be read: a memory bound checked against -1 proves nothing. */
long proc_status_kb(pid_t pid, const char *field);

#endif
