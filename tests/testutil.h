/* testutil.h -- helpers for the Check suites (placeholder). */
#ifndef STILL_TESTUTIL_H
#define STILL_TESTUTIL_H
#endif
