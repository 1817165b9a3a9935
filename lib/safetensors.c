/* safetensors.c (placeholder) */
#include "internal.h"
