/* tool.h -- shared by the still subcommands (placeholder). */
#ifndef STILL_TOOL_H
#define STILL_TOOL_H
#endif
