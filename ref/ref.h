/* ref.h -- the oracle's internal functions (double precision, SPEC §1-6). */
#ifndef STILL_REF_H
#define STILL_REF_H
#include "internal.h"
#endif
