/*
 * compact.h - journal compaction, run from a timer on the broker's loop
 * (compact.c says what it does).  compact_start() runs a first pass at
 * once; 0 or -ENOMEM.
 */
#ifndef FERRY_BROKER_COMPACT_H
#define FERRY_BROKER_COMPACT_H

struct core;

int compact_start(struct core *b);
void compact_stop(struct core *b);

#endif
