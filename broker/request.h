/*
 * request.h - the meaning of a client's frames (the layer above conn.c).
 *
 * request_init() registers the handlers with the connection layer; from
 * then on every frame a connection decodes is handled here: the handshake,
 * PUB, SUB, UNSUB, ACK, NACK, TOUCH, DELETE, PING and inspection.
 */
#ifndef FERRY_BROKER_REQUEST_H
#define FERRY_BROKER_REQUEST_H

void request_init(void);

#endif
