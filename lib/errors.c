/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* errors.c -- status code names and the version string. */
#include "internal.h"

const char *still_version_string(void)
{
    return STILL_VERSION_STRING;
}

const char *still_strerror(int code)
{
    switch (code) {
    case STILL_OK: return "success";
    case STILL_E_NULL: return "a required pointer is NULL";
    case STILL_E_SHAPE: return "a dimension is out of range or inconsistent";
    case STILL_E_CONFIG: return "a configuration value is out of range";
    case STILL_E_NONFINITE: return "an input holds NaN or infinity, or an intermediate/result overflows";
    case STILL_E_NOMEM: return "out of memory";
    case STILL_E_OVERFLOW: return "a size computation overflows";
    case STILL_E_ISA: return "the requested ISA is unknown or not supported by this CPU";
    case STILL_E_DTYPE: return "the element type is not accepted here";
    case STILL_E_SELECTION: return "the forced selection is malformed";
    case STILL_E_IO: return "a file could not be opened, read or written";
    case STILL_E_FORMAT: return "a file or byte stream is malformed";
    case STILL_E_VERSION: return "a byte stream has an unknown version";
    case STILL_E_CHECKSUM: return "a byte stream's checksum does not match";
    case STILL_E_STATE: return "the state object does not fit the call";
    case STILL_E_PARAMS: return "the parameters are malformed";
    case STILL_E_UNSUPPORTED: return "the combination is not implemented";
    case STILL_E_CANCELED: return "canceled by the progress callback";
    default: return "unknown status code";
    }
}
