/* npy.c (placeholder) */
#include "internal.h"
