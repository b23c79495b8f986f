/* The audit row format (placeholder; issue 7). */
#include "auditfmt.h"
