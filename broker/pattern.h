/*
 * pattern.h - topic patterns for permissions, as NATS writes subjects.
 *
 * A pattern is topic segments separated by '.', where a segment may be
 * "*" (exactly one segment, any name) and the last one may be ">" (one or
 * more segments: the rest).  "orders.*" matches "orders.created" but not
 * "orders" nor "orders.eu.created"; "orders.>" matches both of those
 * longer ones but not "orders".  ">" alone matches every topic.  Pure
 * functions over strings: no allocation.
 */
#ifndef FERRY_BROKER_PATTERN_H
#define FERRY_BROKER_PATTERN_H

#include <stddef.h>

/* 1 if p[0..len) is a valid pattern: non-empty segments of topic-name
 * characters, or "*", or ">" as the last segment; at most FY_NAME_MAX
 * bytes. */
int pattern_valid(const char *p, size_t len);

/* 1 if the valid pattern pat (NUL-terminated) matches topic[0..len). */
int pattern_match(const char *pat, const char *topic, size_t len);

#endif
