/* ref_api.c (placeholder) */
#include "internal.h"
