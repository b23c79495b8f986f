/* The audit row format (placeholder; issue 7). */
#pragma once
