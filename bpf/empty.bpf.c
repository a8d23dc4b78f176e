/* The floor: the packet parsed as the models parse it, and passed. Its time is what the test run
 * and the parse cost with no stage at all. */
#include "parse.h"

static __always_inline int empty(struct pkt *p, void *data, void *end)
{
	return p->family == 255; /* never: keeps the parse */
}

DPLAB_PROGRAMS(empty)
