/* fork.c built with _LGPL_SOURCE: liburcu's headers inline the read side,
 * which reads and writes urcu_memb_gp, urcu_memb_reader and
 * urcu_memb_has_sys_membarrier directly instead of calling the library. */
#define _LGPL_SOURCE
#include "fork.c"
