/* section_in_callback.c built with _LGPL_SOURCE: the callback's
 * rcu_read_lock/unlock are inlined into the call_rcu thread's
 * urcu_memb_reader. */
#define _LGPL_SOURCE
#include "section_in_callback.c"
