/* generic.c -- portable kernels (placeholder). */
#include "kernels.h"
