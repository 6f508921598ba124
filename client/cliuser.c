/*
 * cliuser.c - `ferry user`: edit the broker's users file (broker/users.h).
 *
 * The password never leaves this process: it is read from the terminal
 * without echo (or one line of standard input when that is not a
 * terminal), turned into a SCRAM verifier with a fresh random salt, and
 * wiped.  The file is rewritten atomically with mode 0600; a running
 * ferryd picks the change up on SIGHUP.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cliargs.h"
#include "cliuser.h"
#include "config.h"
#include "users.h"

#define SALT_LEN 16
#define PW_MAX 1024

const char cliuser_usage[] =
"usage: ferry user add NAME [--publish PATTERN]... [--subscribe PATTERN]...\n"
"                          [--admin] [--no-password] [--file PATH]\n"
"                          [--iterations N]\n"
"       ferry user passwd NAME [--file PATH]\n"
"       ferry user del NAME [--file PATH]\n"
"       ferry user list [--file PATH]\n"
"\n"
"Edit the users file that ferryd's users_file names.  add and passwd read\n"
"the password from the terminal without echo, or one line of standard\n"
"input when it is not a terminal.  The broker keeps only a salted SCRAM\n"
"verifier.  Send ferryd SIGHUP to apply a change.\n"
"\n"
"  --publish PATTERN    topics the user may publish to (repeatable)\n"
"  --subscribe PATTERN  topics the user may subscribe to (repeatable)\n"
"                       PATTERN: segments separated by '.', '*' one\n"
"                       segment, '>' last for the rest; a leading '!'\n"
"                       denies, and a deny wins (quote it in a shell)\n"
"  --admin              may also delete, replay dead letters and inspect\n"
"                       any topic\n"
"  --no-password        no password login: for the \"anonymous\" entry\n"
"                       and for users that log in by client certificate\n"
"  --file PATH          the users file (default " FERRY_USERS_FILE ")\n"
"  --iterations N       PBKDF2 iterations (default 4096, at least 4096)\n";

__attribute__((format(printf, 1, 2)))
static void
fail(const char *fmt, ...)
{
	va_list ap;

	fputs("ferry: user: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* One line from fp into buf, without its newline; -1 at EOF. */
static int
read_line(FILE *fp, char *buf, size_t size)
{
	size_t n;

	if (fgets(buf, (int)size, fp) == NULL)
		return -1;
	n = strlen(buf);
	if (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	else if (n == size - 1)
		fail("password longer than %d bytes", PW_MAX);
	if (n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	return 0;
}

/* Prompt on the terminal with echo off; the old mode is restored even if
 * reading fails. */
static int
read_noecho(const char *prompt, char *buf, size_t size)
{
	struct termios old, quiet;
	int r;

	fputs(prompt, stderr);
	fflush(stderr);
	if (tcgetattr(STDIN_FILENO, &old) != 0)
		return -1;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0)
		return -1;
	r = read_line(stdin, buf, size);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	return r;
}

/* The new password for name, as a verifier in *v. */
static void
get_verifier(const char *name, uint32_t iter, struct fy_scram_verifier *v)
{
	char pw[PW_MAX + 2], again[PW_MAX + 2], prompt[128];
	uint8_t salt[SALT_LEN];

	if (isatty(STDIN_FILENO)) {
		snprintf(prompt, sizeof(prompt), "Password for %s: ", name);
		if (read_noecho(prompt, pw, sizeof(pw)) != 0 ||
		    read_noecho("Again: ", again, sizeof(again)) != 0)
			fail("cannot read the password from the terminal");
		if (strcmp(pw, again) != 0) {
			OPENSSL_cleanse(pw, sizeof(pw));
			OPENSSL_cleanse(again, sizeof(again));
			fail("the passwords differ; nothing changed");
		}
		OPENSSL_cleanse(again, sizeof(again));
	} else if (read_line(stdin, pw, sizeof(pw)) != 0) {
		fail("no password on standard input");
	}
	if (pw[0] == '\0')
		fail("empty password refused (--no-password for none)");
	if (RAND_bytes(salt, sizeof(salt)) != 1)
		fail("no random bytes for the salt");
	if (fy_scram_verifier_make(v, pw, strlen(pw), salt, sizeof(salt),
	    iter) != FY_OK)
		fail("cannot derive the verifier");
	OPENSSL_cleanse(pw, sizeof(pw));
}

/* Load path; a file that does not exist yet is an empty one when
 * creating is allowed. */
static struct users *
load(const char *path, int create)
{
	struct users *u = NULL;
	char err[512];
	int r;

	r = users_load(path, &u, err, sizeof(err));
	if (r == -ENOENT && create) {
		if ((u = users_new()) == NULL)
			fail("out of memory");
		return u;
	}
	if (r != 0)
		fail("%s", err);
	return u;
}

static void
save(struct users *u, const char *path)
{
	char err[512];

	if (users_save(u, path, err, sizeof(err)) != 0)
		fail("%s", err);
}

static void
list(const struct users *u)
{
	const struct users_entry *e;
	char pub[1024], sub[1024];
	uint32_t i;

	for (i = 0; i < u->n; i++) {
		e = &u->l[i].e;
		if (e->name == NULL)
			continue;
		users_pats_format(e, USERS_PUB, pub, sizeof(pub));
		users_pats_format(e, USERS_SUB, sub, sizeof(sub));
		printf("%-20s %-9s pub=%s sub=%s%s\n", e->name,
		    e->has_verifier ? "password" : "-", pub, sub,
		    e->admin ? " admin" : "");
	}
}

int
cliuser_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "publish", required_argument, NULL, 'P' },
		{ "subscribe", required_argument, NULL, 'S' },
		{ "admin", no_argument, NULL, 'a' },
		{ "no-password", no_argument, NULL, 'n' },
		{ "file", required_argument, NULL, 'f' },
		{ "iterations", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char **pub = calloc((size_t)argc, sizeof(char *));
	const char **sub = calloc((size_t)argc, sizeof(char *));
	const char *path = FERRY_USERS_FILE, *verb, *name = NULL;
	struct fy_scram_verifier v;
	struct users *u;
	size_t npub = 0, nsub = 0;
	uint32_t iter = FY_SCRAM_ITER_DEFAULT;
	int ch, admin = 0, nopw = 0, r;
	char err[512];

	cli_command = "user";
	if (pub == NULL || sub == NULL)
		fail("out of memory");
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'P':
			pub[npub++] = optarg;
			break;
		case 'S':
			sub[nsub++] = optarg;
			break;
		case 'a':
			admin = 1;
			break;
		case 'n':
			nopw = 1;
			break;
		case 'f':
			path = optarg;
			break;
		case 'i':
			iter = (uint32_t)cli_parse_num("--iterations", optarg,
			    FY_SCRAM_ITER_MIN, FY_SCRAM_ITER_MAX);
			break;
		case 'h':
			fputs(cliuser_usage, stdout);
			exit(0);
		default:
			cli_usage_error("bad option");
		}
	}
	if (optind >= argc)
		cli_usage_error("missing add, passwd, del or list");
	verb = argv[optind++];
	if (strcmp(verb, "list") != 0) {
		if (optind >= argc)
			cli_usage_error("%s: missing user name", verb);
		name = argv[optind++];
	}
	if (optind < argc)
		cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (strcmp(verb, "add") != 0 && (npub || nsub || admin || nopw))
		cli_usage_error("--publish, --subscribe, --admin and "
		    "--no-password go with add");

	if (strcmp(verb, "list") == 0) {
		u = load(path, 0);
		list(u);
	} else if (strcmp(verb, "add") == 0) {
		u = load(path, 1);
		if (users_find(u, name) != NULL)
			fail("user \"%s\" exists in %s (passwd changes the "
			    "password; del, then add, the permissions)",
			    name, path);
		if (!nopw && strcmp(name, USERS_ANONYMOUS) == 0)
			fail("\"" USERS_ANONYMOUS "\" cannot have a password: "
			    "add it with --no-password");
		if (!nopw && !fy_scram_user_valid(name, strlen(name)))
			fail("invalid user name \"%s\" (1..64 of A-Z a-z 0-9 "
			    ". _ - @)", name);
		if (!nopw)
			get_verifier(name, iter, &v);
		r = users_add(u, name, nopw ? NULL : &v, pub, npub, sub, nsub,
		    admin, err, sizeof(err));
		OPENSSL_cleanse(&v, sizeof(v));
		if (r != 0)
			fail("%s", err);
		save(u, path);
	} else if (strcmp(verb, "passwd") == 0) {
		u = load(path, 0);
		if (users_find(u, name) == NULL)
			fail("no user \"%s\" in %s", name, path);
		if (strcmp(name, USERS_ANONYMOUS) == 0)
			fail("\"" USERS_ANONYMOUS "\" cannot have a password");
		get_verifier(name, iter, &v);
		users_passwd(u, name, &v);
		OPENSSL_cleanse(&v, sizeof(v));
		save(u, path);
	} else if (strcmp(verb, "del") == 0) {
		u = load(path, 0);
		if (users_del(u, name) != 0)
			fail("no user \"%s\" in %s", name, path);
		save(u, path);
	} else {
		cli_usage_error("unknown verb '%s' (add, passwd, del, list)",
		    verb);
	}
	users_free(u);
	free(pub);
	free(sub);
	return 0;
}
