/*
 * cliuser.h - `ferry user add|passwd|del|list`, editing the users file
 * (broker/users.h).  Part of the ferry program, not of libferry.
 */
#ifndef FERRY_CLIENT_CLIUSER_H
#define FERRY_CLIENT_CLIUSER_H

extern const char cliuser_usage[];

/* argv[0] is "user"; exits 1 with a one-line message on failure. */
int cliuser_main(int argc, char **argv);

#endif
