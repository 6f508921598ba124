/*
 * server.c - the TCP listener: bind, report the port, accept, limit.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <systemd/sd-daemon.h>

#include "core.h"
#include "codec.h"
#include "conn.h"
#include "log.h"
#include "options.h"
#include "server.h"
#include "tls.h"

/* Refuse a connection over max_connections with one ERR frame, written
 * with a plain send(): the socket is new, so its buffer has room. */
static void
refuse(evutil_socket_t fd, unsigned max)
{
	struct fy_enc e;
	struct fy_frame f = {.type = FY_T_ERR};
	char text[96];
	int n;

	n = snprintf(text, sizeof(text),
	    "too many connections (max_connections = %u)", max);
	f.err.code = FY_E_LIMIT;
	f.err.msg = (struct fy_str){text, (uint32_t)n};
	fy_enc_init(&e);
	if (fy_encode(&e, &f) == FY_OK &&
	    send(fd, e.sb.data, e.sb.size, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_debug("refusing a connection: %s", strerror(errno));
	fy_enc_fini(&e);
	evutil_closesocket(fd);
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct core *b = arg;

	b->accept_paused = 0;	/* accepting works again */
	if (b->nconns >= b->opt->max_connections) {
		b->st.refused_limit++;
		log_warn("connection refused: max_connections (%u) reached",
		    b->opt->max_connections);
		refuse(fd, b->opt->max_connections);
		return;
	}
	b->st.accepted++;
	conn_new(b, fd, sa, salen);
}

static void
accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct core *b = arg;

	if (b->listener && !b->stopping)
		evconnlistener_enable(b->listener);
}

static void
accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct core *b = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = {0, 250000};

	/*
	 * Out of file descriptors (or memory): the pending connection stays
	 * in the backlog and the listener stays readable, so accepting again
	 * at once would spin.  Pause accepting for a moment, keep serving who
	 * is connected, and say so once per episode, not per attempt.
	 */
	b->st.accept_errors++;
	evconnlistener_disable(l);
	if (!b->accept_ev)
		b->accept_ev = evtimer_new(b->base, accept_resume_cb, b);
	if (b->accept_ev)
		evtimer_add(b->accept_ev, &tv);
	if (!b->accept_paused++)
		log_warn("accept: %s; not accepting for a while (it is retried "
		    "every 250 ms)", evutil_socket_error_to_string(err));
}

/* "PORT\n" (-1: none), then "TLSPORT\n" when there is a TLS listener. */
static int
write_port_file(const char *path, int port, int tls_port)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	if (!(f = fopen(tmp, "w")))
		return -errno;
	fprintf(f, "%d\n", port);
	if (tls_port)
		fprintf(f, "%d\n", tls_port);
	if (fclose(f) != 0) {
		unlink(tmp);
		return -EIO;
	}
	/* rename() makes the file appear whole: readers poll for it. */
	if (rename(tmp, path) < 0) {
		int r = -errno;

		unlink(tmp);
		return r;
	}
	return 0;
}

/* 1 if fd is bound to a loopback address (127/8 or ::1). */
static int
socket_is_loopback(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >>
		    24 == 127;
	if (ss.ss_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(
		    &((struct sockaddr_in6 *)&ss)->sin6_addr);
	return 0;
}

/*
 * Socket activation: systemd (ferryd.socket, or systemd-socket-activate)
 * bound the socket and passes it as fd 3.  1 if it did and b->listener
 * uses it, 0 if there is none, -errno (logged) if what was passed is not
 * one listening stream socket.
 */
static int
listen_inherited(struct core *b)
{
	int n = sd_listen_fds(1);	/* 1: not for our children */
	int fd = SD_LISTEN_FDS_START;

	if (n <= 0)
		return n < 0 ? (log_error("sd_listen_fds: %s", strerror(-n)),
		    n) : 0;
	if (n > 1 || sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
		log_error("socket activation: expected one listening stream "
		    "socket, got %d file descriptor(s)", n);
		return -EINVAL;
	}
	/* the same rule as for listen: no anonymous access from a network
	 * by accident (auth.c) */
	if (!b->opt->users_file && !b->opt->allow_anonymous &&
	    !socket_is_loopback(fd)) {
		log_error("refusing the socket systemd passed: it is not on "
		    "loopback and there is no users_file (set one, or "
		    "allow_anonymous = yes)");
		return -EPERM;
	}
	if (evutil_make_socket_nonblocking(fd) < 0 ||
	    evutil_make_socket_closeonexec(fd) < 0)
		return -errno;
	b->listener = evconnlistener_new(b->base, accept_cb, b,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (!b->listener) {
		log_error("socket activation: cannot use fd %d", fd);
		return -ENOMEM;
	}
	log_info("listening on the socket systemd passed (listen and port "
	    "are ignored)");
	return 1;
}

int
server_listen(struct core *b)
{
	const struct options *o = b->opt;
	struct addrinfo hints = {0}, *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char port[16], addr[INET6_ADDRSTRLEN] = "?";
	int r;

	/* port = -1: TLS only (options_check() made sure there is TLS). */
	if (o->port < 0)
		goto tls;
	if ((r = listen_inherited(b)) < 0)
		return r;
	if (r > 0)
		goto bound;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", o->port);
	if ((r = getaddrinfo(o->listen, port, &hints, &res)) != 0) {
		log_error("cannot resolve listen address %s: %s", o->listen,
		    gai_strerror(r));
		return -EINVAL;
	}
	b->listener = evconnlistener_new_bind(b->base, accept_cb, b,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
	    LEV_OPT_REUSEABLE, 511, res->ai_addr, (int)res->ai_addrlen);
	freeaddrinfo(res);
	if (!b->listener) {
		r = -errno;
		log_error("cannot listen on %s port %d: %s", o->listen,
		    o->port, strerror(errno));
		return r ? r : -EADDRINUSE;
	}
bound:
	evconnlistener_set_error_cb(b->listener, accept_error_cb);
	if (getsockname(evconnlistener_get_fd(b->listener),
	    (struct sockaddr *)&ss, &sslen) == 0) {
		if (ss.ss_family == AF_INET) {
			b->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->
			    sin_addr, addr, sizeof(addr));
		} else if (ss.ss_family == AF_INET6) {
			b->port = ntohs(
			    ((struct sockaddr_in6 *)&ss)->sin6_port);
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->
			    sin6_addr, addr, sizeof(addr));
		}
	}
	log_info("listening on %s port %d", addr, b->port);
tls:
	if ((r = tls_listen(b)) < 0)
		return r;
	if (o->port_file && (r = write_port_file(o->port_file, b->port,
	    b->tls ? b->tls_port : 0))) {
		log_error("cannot write port file %s: %s", o->port_file,
		    strerror(-r));
		return r;
	}
	return 0;
}

void
server_unlisten(struct core *b)
{
	if (b->listener) {
		evconnlistener_free(b->listener);
		b->listener = NULL;
	}
	if (b->accept_ev) {
		event_free(b->accept_ev);
		b->accept_ev = NULL;
	}
	tls_fini(b);
}
