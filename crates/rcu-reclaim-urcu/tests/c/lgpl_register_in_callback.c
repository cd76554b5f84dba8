/* lgpl_section_in_callback.c after a callback that registers the call_rcu
 * thread again and unregisters it (see section_in_callback.c). */
#define _LGPL_SOURCE
#define REGISTER_IN_CALLBACK_FIRST
#include "section_in_callback.c"
