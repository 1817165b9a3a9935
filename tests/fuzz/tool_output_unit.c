/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* tool_output_unit.c -- tools/tool_output.c compiled into the tool_args corpus
 * replay (tests/Makefile.am), as .ci/fuzz.sh links it into fuzz_tool_args. */
#include "tool_output.c"
