/*
 * Terminal escape handling for replayed diagnostics. hpcc has the compiler
 * colour its diagnostics always, so one cache entry serves terminals and
 * log files alike; where the user's stderr should not get colour, the
 * escapes are removed before printing.
 */
#pragma once

#include "buf.h"

/* Removes CSI sequences (ESC [ ... final byte) and OSC sequences (ESC ] ...
 * terminated by BEL or ESC \) in place. */
void ansi_strip(struct buf *b);
