/*
 * tls.c - libferry's TLS: the context a handle keeps for its reconnects,
 * the handshake on a freshly connected socket, and the byte I/O the core
 * uses instead of recv()/send() when a handle speaks TLS: lf_tls_setup()
 * plugs it into the core (f->tls), which never names this file.
 *
 * The broker's certificate is always verified, against ferry_opts.tls_ca
 * or the system's CAs, and must name the host connected to (or
 * tls_server_name): there is no option to skip either, since a client
 * that accepts any certificate talks to whoever answers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ferry-int.h"

static const struct lf_tls_ops tls_ops;

/* The newest OpenSSL error as text. */
static const char *
ssl_error(char *buf, size_t size)
{
	unsigned long e = ERR_get_error();

	if (e == 0)
		return "handshake failed";
	ERR_error_string_n(e, buf, size);
	ERR_clear_error();
	return buf;
}

int
lf_tls_setup(struct ferry *f, const struct ferry_opts *o)
{
	char why[256];
	const char *what = "cannot create a TLS context";
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		goto fail;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
		goto fail;
	/* The core may move its output buffer between two tries of one
	 * write (it compacts and grows it). */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* A broker closing without close_notify (after an ERR, or a
	 * crash) is a closed connection, not a protocol error: frames
	 * carry their length, so a cut one shows anyway. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	what = o->tls_ca ? o->tls_ca : "the system's CA certificates";
	if ((o->tls_ca ? SSL_CTX_load_verify_locations(ctx, o->tls_ca, NULL) :
	    SSL_CTX_set_default_verify_paths(ctx)) != 1)
		goto fail;
	if ((o->tls_cert != NULL) != (o->tls_key != NULL)) {
		SSL_CTX_free(ctx);
		return lf_seterr(f, FERRY_EINVAL, "a client certificate "
		    "needs its key, and the reverse");
	}
	if (o->tls_cert != NULL) {
		what = o->tls_cert;
		if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert) != 1)
			goto fail;
		what = o->tls_key;
		if (SSL_CTX_use_PrivateKey_file(ctx, o->tls_key,
		    SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1)
			goto fail;
	}
	if (o->tls_server_name != NULL &&
	    (f->tls_name = strdup(o->tls_server_name)) == NULL) {
		SSL_CTX_free(ctx);
		return lf_seterr(f, FERRY_ENOMEM, "out of memory");
	}
	f->tls_ctx = ctx;
	f->tls = &tls_ops;	/* the core's byte I/O goes through us */
	return 0;
fail:
	SSL_CTX_free(ctx);
	return lf_seterr(f, FERRY_EINVAL, "TLS: %s: %s", what,
	    ssl_error(why, sizeof(why)));
}

/* A failed handshake, said in one line: which check failed. */
static int
tls_fail(struct ferry *f, SSL *ssl)
{
	const char *name = f->tls_name ? f->tls_name : f->host;
	long v = SSL_get_verify_result(ssl);
	char why[256];

	if (v == X509_V_ERR_HOSTNAME_MISMATCH ||
	    v == X509_V_ERR_IP_ADDRESS_MISMATCH)
		return lf_fatal(f, FERRY_ECONNECT, "TLS: %s:%d: the broker's "
		    "certificate is not for \"%s\"", f->host, f->port, name);
	if (v != X509_V_OK)
		return lf_fatal(f, FERRY_ECONNECT, "TLS: %s:%d: the broker's "
		    "certificate is not trusted: %s (is --ca right?)", f->host,
		    f->port, X509_verify_cert_error_string(v));
	return lf_fatal(f, FERRY_ECONNECT, "TLS: %s:%d: %s (is it a TLS "
	    "port?)", f->host, f->port, ssl_error(why, sizeof(why)));
}

int
lf_tls_attach(struct ferry *f)
{
	const char *name = f->tls_name ? f->tls_name : f->host;
	struct in6_addr a6;
	SSL *ssl;
	int r;

	ssl = SSL_new(f->tls_ctx);
	if (ssl == NULL || SSL_set_fd(ssl, f->fd) != 1) {
		SSL_free(ssl);
		return lf_fatal(f, FERRY_ENOMEM, "TLS: out of memory");
	}
	/* An address is checked against the certificate's IP names, a
	 * host name against its DNS names (and sent as SNI). */
	if (inet_pton(AF_INET, name, &a6) == 1 ||
	    inet_pton(AF_INET6, name, &a6) == 1) {
		r = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
	} else {
		r = SSL_set_tlsext_host_name(ssl, name) == 1 &&
		    SSL_set1_host(ssl, name) == 1;
	}
	if (r != 1) {
		SSL_free(ssl);
		return lf_fatal(f, FERRY_EINVAL, "TLS: cannot check the "
		    "certificate against \"%s\"", name);
	}
	SSL_set_connect_state(ssl);
	f->ssl = ssl;
	return 0;
}

int
lf_tls_step(struct ferry *f)
{
	SSL *ssl = f->ssl;
	int r, e;

	if (ssl == NULL || SSL_is_init_finished(ssl))
		return 0;
	r = SSL_do_handshake(ssl);
	if (r == 1)
		return 0;
	e = SSL_get_error(ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		return 1;
	if (e == SSL_ERROR_WANT_WRITE)
		return 2;
	/* lf_fatal() frees the session: report from it first. */
	f->ssl = NULL;
	r = tls_fail(f, ssl);
	SSL_free(ssl);
	return r;
}

int
lf_tls_ready(const struct ferry *f)
{
	return f->ssl == NULL || SSL_is_init_finished(f->ssl);
}

int
lf_tls_handshake(struct ferry *f, const char *host, int port,
    int64_t deadline)
{
	struct pollfd p;
	int r, wait;

	if (lf_tls_attach(f) < 0)
		return f->err;
	while ((r = lf_tls_step(f)) > 0) {
		wait = -1;
		if (deadline >= 0) {
			int64_t left = deadline - lf_now_ms();

			if (left <= 0)
				return lf_fatal(f, FERRY_ECONNECT, "%s:%d: no "
				    "TLS handshake in time", host, port);
			wait = (int)left;
		}
		p.fd = f->fd;
		p.events = r == 1 ? POLLIN : POLLOUT;
		if (poll(&p, 1, wait) < 0 && errno != EINTR)
			return lf_fatal(f, FERRY_EIO, "poll: %s",
			    strerror(errno));
	}
	return r;
}

/* The core's recv(): through TLS once the session is up. */
static ssize_t
tls_recv(struct ferry *f, void *buf, size_t len)
{
	int n, e;

	if (f->ssl == NULL)
		return recv(f->fd, buf, len, MSG_DONTWAIT);
	if (len > INT32_MAX)
		len = INT32_MAX;
	n = SSL_read(f->ssl, buf, (int)len);
	if (n > 0)
		return n;
	e = SSL_get_error(f->ssl, n);
	ERR_clear_error();
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		errno = EAGAIN;
		return -1;
	}
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	if (e == SSL_ERROR_SYSCALL && errno == 0)
		return 0;		/* closed without close_notify */
	if (e != SSL_ERROR_SYSCALL)
		errno = EPROTO;
	return -1;
}

/* Its send(). */
static ssize_t
tls_send(struct ferry *f, const void *buf, size_t len)
{
	int n, e;

	if (f->ssl == NULL)
		return send(f->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (len > INT32_MAX)
		len = INT32_MAX;
	n = SSL_write(f->ssl, buf, (int)len);
	if (n > 0)
		return n;
	e = SSL_get_error(f->ssl, n);
	ERR_clear_error();
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		errno = EAGAIN;
		return -1;
	}
	if (e != SSL_ERROR_SYSCALL)
		errno = EPROTO;
	return -1;
}

int
lf_tls_pending(const struct ferry *f)
{
	return f->ssl != NULL && SSL_pending(f->ssl) > 0;
}

void
lf_tls_drop(struct ferry *f)
{
	if (f->ssl != NULL)
		SSL_free(f->ssl);	/* the fd is the caller's to close */
	f->ssl = NULL;
}

/* Everything, when the handle is freed. */
static void
tls_release(struct ferry *f)
{
	lf_tls_drop(f);
	SSL_CTX_free(f->tls_ctx);
	free(f->tls_name);
	f->tls_ctx = NULL;
	f->tls_name = NULL;
}

static const struct lf_tls_ops tls_ops = {
	.recv = tls_recv,
	.send = tls_send,
	.drop = lf_tls_drop,
	.release = tls_release,
};
