/* teacher.c -- SPEC §1 (placeholder until the ref path lands). */
#include "ref.h"
