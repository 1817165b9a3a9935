/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* tool_attn_unit.c -- tools/tool_attn.c compiled into the tool_args corpus
 * replay (tests/Makefile.am), as .ci/fuzz.sh links it into fuzz_tool_args:
 * the parser under test is the tool's own source. */
#include "tool_attn.c"
