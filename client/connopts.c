/*
 * connopts.c - the options of ferry_connect_opts() and of an async
 * handle's login: URLs, where the password comes from, and the client
 * side of the SCRAM-SHA-256 handshake (PROTOCOL.md, section 4).
 *
 * A login plugs itself into the core (f->login, set by lf_login_setup()):
 * the core calls its challenge and verify hooks as CHALLENGE and WELCOME
 * arrive, and never names this file.  Both fail the handle rather than go
 * on with a broker that did not prove itself, since a client that
 * accepts any WELCOME would talk to whoever answers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "ferry-int.h"

#define PW_MAX 1024

/* "ferry://[USER@]HOST[:PORT]" (HOST may be "[v6]") into parts. */
static int
parse_url(struct ferry *f, const char *url, char **user, char **host,
    int *port, int *tls)
{
	const char *p, *at, *end, *colon;
	char *e;
	long n;

	*user = *host = NULL;
	if (strncmp(url, "ferry://", 8) == 0) {
		p = url + 8;
	} else if (strncmp(url, "ferrys://", 9) == 0) {
		p = url + 9;
		*tls = 1;
	} else {
		return lf_seterr(f, FERRY_EINVAL, "%s: not a ferry:// URL",
		    url);
	}
	end = p + strcspn(p, "/?#");
	at = memchr(p, '@', (size_t)(end - p));
	if (at != NULL) {
		if (at == p || memchr(p, ':', (size_t)(at - p)) != NULL)
			return lf_seterr(f, FERRY_EINVAL, "%s: put no "
			    "password in a URL (use FERRY_PASSWORD or a "
			    "password file)", url);
		*user = strndup(p, (size_t)(at - p));
		p = at + 1;
	}
	if (*p == '[') {
		colon = memchr(p, ']', (size_t)(end - p));
		if (colon == NULL)
			goto bad;
		*host = strndup(p + 1, (size_t)(colon - p - 1));
		colon++;
		if (colon != end && *colon != ':')
			goto bad;
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		*host = strndup(p, (size_t)((colon ? colon : end) - p));
	}
	if (*host == NULL || (at != NULL && *user == NULL))
		return lf_seterr(f, FERRY_ENOMEM, "out of memory");
	if (colon != NULL && colon != end) {
		errno = 0;
		n = strtol(colon + 1, &e, 10);
		if (e != end || errno || n < 1 || n > 65535)
			goto bad;
		*port = (int)n;
	}
	if (**host == '\0' || *end != '\0')
		goto bad;
	return 0;
bad:
	return lf_seterr(f, FERRY_EINVAL, "%s: expected "
	    "ferry://[USER@]HOST[:PORT]", url);
}

/* The password, from the first source that has one. */
static int
get_password(struct ferry *f, const struct ferry_opts *o)
{
	char buf[PW_MAX + 2];
	const char *env = getenv("FERRY_PASSWORD");
	FILE *fp;
	size_t n;

	buf[0] = '\0';
	if (o->password != NULL) {
		snprintf(buf, sizeof(buf), "%s", o->password);
	} else if (o->password_cb != NULL) {
		if (o->password_cb(o->password_arg, buf, sizeof(buf)) != 0)
			return lf_seterr(f, FERRY_EINVAL, "the password "
			    "callback failed");
		buf[sizeof(buf) - 1] = '\0';
	} else if (env != NULL && *env) {
		snprintf(buf, sizeof(buf), "%s", env);
	} else if (o->password_file != NULL) {
		fp = fopen(o->password_file, "re");
		if (fp == NULL)
			return lf_seterr(f, FERRY_EINVAL, "%s: %s",
			    o->password_file, strerror(errno));
		if (fgets(buf, sizeof(buf), fp) == NULL)
			buf[0] = '\0';
		fclose(fp);
		n = strcspn(buf, "\r\n");
		buf[n] = '\0';
	} else {
		return lf_seterr(f, FERRY_EINVAL, "no password for user \"%s\" "
		    "(set FERRY_PASSWORD or give a password file)", f->user);
	}
	if (buf[0] == '\0')
		return lf_seterr(f, FERRY_EINVAL, "empty password for user "
		    "\"%s\"", f->user);
	f->password = strdup(buf);
	OPENSSL_cleanse(buf, sizeof(buf));
	if (f->password == NULL)
		return lf_seterr(f, FERRY_ENOMEM, "out of memory");
	return 0;
}

static int scram_challenge(struct ferry *f, const struct fy_frame *fr);
static int scram_verify(struct ferry *f, const struct fy_frame *fr);
static void forget_login(struct ferry *f);

/* What the core calls as CHALLENGE and WELCOME arrive, and at the end. */
static const struct lf_login_ops scram_login = {
	.challenge = scram_challenge,
	.verify = scram_verify,
	.forget = forget_login,
};

int
lf_login_setup(struct ferry *f, const struct ferry_opts *o, const char *user,
    int tls)
{
	int r;

	if ((tls || o->tls_ca || o->tls_cert) && (r = lf_tls_setup(f, o)))
		return r;
	if (user == NULL || *user == '\0')
		return 0;
	if (!fy_scram_user_valid(user, strlen(user)))
		return lf_seterr(f, FERRY_EINVAL, "invalid user name \"%.64s\" "
		    "(1..64 of A-Z a-z 0-9 . _ - @)", user);
	f->login = &scram_login;	/* from now on it has secrets to wipe */
	if ((f->user = strdup(user)) == NULL)
		return lf_seterr(f, FERRY_ENOMEM, "out of memory");
	return get_password(f, o);
}

int
lf_opts_apply(struct ferry *f, const struct ferry_opts *o, const char *url,
    const char *host, int port)
{
	char *uuser = NULL, *uhost = NULL;
	const char *user = o->user;
	int uport = 0, tls = o->tls, r = 0;

	if (url != NULL && *url != '\0') {
		r = parse_url(f, url, &uuser, &uhost, &uport, &tls);
		if (host == NULL)
			host = uhost;
		if (port == 0)
			port = uport;
		if (user == NULL)
			user = uuser;
	}
	if (port == 0)
		port = tls ? FERRY_DEFAULT_TLS_PORT : FERRY_DEFAULT_PORT;
	if (!r && host != NULL) {
		free(f->host);
		if ((f->host = strdup(host)) == NULL)
			r = lf_seterr(f, FERRY_ENOMEM, "out of memory");
	}
	f->port = port;
	if (!r)
		r = lf_login_setup(f, o, user, tls);
	free(uuser);
	free(uhost);
	return r;
}

const char *
ferry_user(const struct ferry *f)
{
	return f ? f->authuser : "";
}

int
lf_scram_hello(struct ferry *f, struct fy_frame *hello, char *buf)
{
	char nonce[25];

	if (f->user == NULL)
		return 0;
	free(f->scram);
	f->scram = calloc(1, sizeof(*f->scram));
	if (f->scram == NULL)
		return lf_fatal(f, FERRY_ENOMEM, "out of memory");
	if (fy_scram_nonce(nonce, 24) != FY_OK ||
	    fy_scram_client_first(f->scram, f->user, nonce, buf) != FY_OK)
		return lf_fatal(f, FERRY_EINVAL, "cannot start SCRAM for "
		    "user \"%s\"", f->user);
	hello->hello.mech = (struct fy_str){FY_SCRAM_MECH,
	    sizeof(FY_SCRAM_MECH) - 1};
	hello->hello.sasl = (struct fy_str){buf, (uint32_t)strlen(buf)};
	return 0;
}

/* The login's challenge hook: answer CHALLENGE with AUTH. */
static int
scram_challenge(struct ferry *f, const struct fy_frame *fr)
{
	struct fy_frame a = {.type = FY_T_AUTH};
	char out[FY_SCRAM_MSG_MAX];
	size_t end;
	int r;

	if (f->scram == NULL || f->welcomed)
		return lf_fatal(f, FERRY_EBADREPLY, "unexpected CHALLENGE "
		    "from the broker");
	r = fy_scram_client_final(f->scram, f->password,
	    strlen(f->password), fr->auth.sasl.p, fr->auth.sasl.len, out);
	if (r != FY_OK)
		return lf_fatal(f, FERRY_ECONNECT, "the broker's SCRAM "
		    "challenge is invalid (foreign nonce or iteration count "
		    "out of range)");
	a.auth.sasl = (struct fy_str){out, (uint32_t)strlen(out)};
	end = f->enc.sb.size;
	r = lf_encode(f, &a);
	OPENSSL_cleanse(out, sizeof(out));
	if (r < 0)
		return lf_fatal(f, FERRY_ENOMEM, "out of memory");
	if (f->gated && f->wgate < end) {
		/* Requests queued after HELLO: AUTH goes before them. */
		size_t alen = f->enc.sb.size - end;
		char *p = f->enc.sb.data, *tmp = malloc(alen);

		if (tmp == NULL)
			return lf_fatal(f, FERRY_ENOMEM, "out of memory");
		memcpy(tmp, p + end, alen);
		memmove(p + f->wgate + alen, p + f->wgate, end - f->wgate);
		memcpy(p + f->wgate, tmp, alen);
		free(tmp);
	}
	if (f->gated)
		f->wgate += f->enc.sb.size - end;
	return 0;
}

/* Its verify hook: check WELCOME's server signature. */
static int
scram_verify(struct ferry *f, const struct fy_frame *fr)
{
	int r;

	if (f->scram == NULL)
		return 0;
	r = fy_scram_client_verify(f->scram, fr->welcome.sasl.p,
	    fr->welcome.sasl.len);
	free(f->scram);
	f->scram = NULL;
	f->gated = 0;	/* what waited may go (checked below first) */
	if (r != FY_OK)
		return lf_fatal(f, FERRY_ECONNECT, "the broker did not prove "
		    "it knows user \"%s\"'s password: not the right broker, "
		    "or someone in between", f->user);
	return 0;
}

void
lf_scram_gate(struct ferry *f)
{
	f->gated = f->scram != NULL;
	f->wgate = f->enc.sb.size;
}

/* Its forget hook: wipe and free the password and SCRAM state. */
static void
forget_login(struct ferry *f)
{
	if (f->password != NULL) {
		OPENSSL_cleanse(f->password, strlen(f->password));
		free(f->password);
	}
	if (f->scram != NULL) {
		fy_scram_client_clear(f->scram);
		free(f->scram);
	}
	free(f->user);
	f->password = NULL;
	f->scram = NULL;
	f->user = NULL;
}
