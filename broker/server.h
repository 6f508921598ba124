/*
 * server.h - the TCP listener: bind, report the port, accept, limit
 * (max_connections); the TLS listener (tls.c) is started and stopped with
 * it.  Accepted sockets become conns (conn.c).
 */
#ifndef FERRY_BROKER_SERVER_H
#define FERRY_BROKER_SERVER_H

struct core;

/* Bind the listeners (or take the socket systemd passed) and write
 * port_file.  0 or -errno, logged. */
int server_listen(struct core *b);

/* Stop accepting; safe to call twice. */
void server_unlisten(struct core *b);

#endif
