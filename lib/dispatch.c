/* dispatch.c (placeholder) */
#include "internal.h"
