/*
 * tls.c - the TLS listener and its OpenSSL context.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core.h"
#include "conn.h"
#include "log.h"
#include "options.h"
#include "tls.h"

struct tls {
	SSL_CTX *ctx;		/* for new connections; each SSL holds a
				   reference, so a reload can drop it */
	struct evconnlistener *listener;
};

/* OpenSSL's queued errors as one line into buf. */
static const char *
ssl_errors(char *buf, size_t size)
{
	unsigned long e;
	size_t at = 0;

	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0 && at + 2 < size) {
		if (at > 0) {
			buf[at++] = ';';
			buf[at++] = ' ';
		}
		ERR_error_string_n(e, buf + at, size - at);
		at += strlen(buf + at);
	}
	return buf[0] ? buf : "unknown error";
}

/* A context from the configured files, or NULL with the reason logged. */
static SSL_CTX *
make_ctx(const struct options *o)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	STACK_OF(X509_NAME) *cas;
	char why[512];
	const char *what = "cannot create a TLS context";

	if (ctx == NULL)
		goto fail;
	/* TLS 1.2 and 1.3 only: older versions have known breaks. */
	what = "cannot restrict TLS versions";
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
		goto fail;
	/* A client closing without close_notify is a disconnect like any
	 * other: frames carry their length, so truncation shows anyway. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
	what = o->tls_cert;
	if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert) != 1)
		goto fail;
	what = o->tls_key;
	if (SSL_CTX_use_PrivateKey_file(ctx, o->tls_key,
	    SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	if (o->tls_ca != NULL) {
		/* Ask for a certificate and verify it if one comes; a
		 * client without one may still log in with SCRAM. */
		what = o->tls_ca;
		if (SSL_CTX_load_verify_locations(ctx, o->tls_ca, NULL) != 1 ||
		    (cas = SSL_load_client_CA_file(o->tls_ca)) == NULL)
			goto fail;
		SSL_CTX_set_client_CA_list(ctx, cas);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	return ctx;
fail:
	log_error("TLS: %s: %s", what, ssl_errors(why, sizeof(why)));
	SSL_CTX_free(ctx);
	return NULL;
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct core *b = arg;
	SSL *ssl;

	if (b->nconns >= b->opt->max_connections) {
		/* Nothing can be said in clear on a TLS port. */
		log_warn("TLS connection refused: max_connections (%u) reached",
		    b->opt->max_connections);
		evutil_closesocket(fd);
		return;
	}
	ssl = SSL_new(b->tls->ctx);
	if (ssl == NULL) {
		log_warn("TLS: cannot create a session: out of memory");
		evutil_closesocket(fd);
		return;
	}
	conn_new_tls(b, fd, sa, salen, ssl);	/* owns ssl and fd now */
}

int
tls_listen(struct core *b)
{
	const struct options *o = b->opt;
	struct addrinfo hints = {0}, *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char port[16];
	int r;

	if (o->tls_cert == NULL)
		return 0;
	if ((b->tls = calloc(1, sizeof(*b->tls))) == NULL)
		return -ENOMEM;
	if ((b->tls->ctx = make_ctx(o)) == NULL)
		return -EINVAL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", o->tls_port);
	if ((r = getaddrinfo(o->listen, port, &hints, &res)) != 0) {
		log_error("cannot resolve listen address %s: %s", o->listen,
		    gai_strerror(r));
		return -EINVAL;
	}
	b->tls->listener = evconnlistener_new_bind(b->base, accept_cb, b,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
	    LEV_OPT_REUSEABLE, 511, res->ai_addr, (int)res->ai_addrlen);
	freeaddrinfo(res);
	if (b->tls->listener == NULL) {
		r = -errno;
		log_error("cannot listen (TLS) on %s port %d: %s", o->listen,
		    o->tls_port, strerror(errno));
		return r ? r : -EADDRINUSE;
	}
	if (getsockname(evconnlistener_get_fd(b->tls->listener),
	    (struct sockaddr *)&ss, &sslen) == 0) {
		if (ss.ss_family == AF_INET)
			b->tls_port = ntohs(
			    ((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			b->tls_port = ntohs(
			    ((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	log_info("listening (TLS 1.2/1.3%s) on %s port %d",
	    o->tls_ca ? ", client certificates from tls_ca" : "", o->listen,
	    b->tls_port);
	return 0;
}

void
tls_fini(struct core *b)
{
	if (b->tls == NULL)
		return;
	if (b->tls->listener)
		evconnlistener_free(b->tls->listener);
	SSL_CTX_free(b->tls->ctx);
	free(b->tls);
	b->tls = NULL;
}

int
tls_reload(struct core *b)
{
	SSL_CTX *ctx;

	if (b->tls == NULL)
		return 0;
	if ((ctx = make_ctx(b->opt)) == NULL) {
		log_warn("TLS certificate not reloaded, the old one stays");
		return -EINVAL;
	}
	SSL_CTX_free(b->tls->ctx);
	b->tls->ctx = ctx;
	log_info("TLS certificate and key reloaded");
	return 0;
}

static SSL *
conn_ssl(struct conn *c)
{
	return c->bev ? bufferevent_openssl_get_ssl(c->bev) : NULL;
}

const char *
tls_version(struct conn *c)
{
	SSL *ssl = conn_ssl(c);

	return ssl ? SSL_get_version(ssl) : NULL;
}

/* An ASN.1 string as a C string, if it holds no NUL (a NUL would let
 * "alice\0.evil.example" pass for "alice"). */
static int
offer(const ASN1_STRING *s, int (*fn)(void *, const char *), void *arg)
{
	char name[256];
	int n = ASN1_STRING_length(s);

	if (n <= 0 || n >= (int)sizeof(name))
		return 0;
	memcpy(name, ASN1_STRING_get0_data(s), (size_t)n);
	name[n] = '\0';
	if (strlen(name) != (size_t)n)
		return 0;
	return fn(arg, name);
}

int
tls_peer_names(struct conn *c, int (*fn)(void *arg, const char *name),
    void *arg)
{
	SSL *ssl = conn_ssl(c);
	GENERAL_NAMES *sans;
	X509_NAME_ENTRY *cn;
	X509 *cert;
	int i, r = 0;

	if (ssl == NULL || c->b->opt->tls_ca == NULL)
		return 0;
	cert = SSL_get_peer_certificate(ssl);
	if (cert == NULL)
		return 0;
	if (SSL_get_verify_result(ssl) != X509_V_OK)
		goto out;
	sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (i = 0; r == 0 && sans && i < sk_GENERAL_NAME_num(sans); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);

		if (g->type == GEN_DNS || g->type == GEN_EMAIL)
			r = offer(g->d.ia5, fn, arg);
	}
	GENERAL_NAMES_free(sans);
	i = X509_NAME_get_index_by_NID(X509_get_subject_name(cert),
	    NID_commonName, -1);
	if (r == 0 && i >= 0) {
		cn = X509_NAME_get_entry(X509_get_subject_name(cert), i);
		r = offer(X509_NAME_ENTRY_get_data(cn), fn, arg);
	}
out:
	X509_free(cert);
	return r;
}
