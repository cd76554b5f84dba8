//! `urcu_memb_flavor`: liburcu's table of the flavor's functions, which
//! liburcu-cds calls through. The top of the crate: it names every part.

use rcu_reclaim_urcu_common::flavor_table::RcuFlavorStruct;

use crate::common::{
    barrier, call_rcu, defer_rcu, register_rculfhash_atfork, unregister_rculfhash_atfork,
};
use crate::reader::{
    urcu_memb_poll_state_synchronize_rcu, urcu_memb_read_lock, urcu_memb_read_ongoing,
    urcu_memb_read_unlock, urcu_memb_register_thread, urcu_memb_start_poll_synchronize_rcu,
    urcu_memb_synchronize_rcu, urcu_memb_unregister_thread,
};

/// A no-op, as in liburcu's memb flavor (quiescent states are for QSBR).
extern "C" fn quiescent_noop() {}

/// The memb flavor's function table, for liburcu-cds (`rcu_flavor_memb`).
#[no_mangle]
pub static urcu_memb_flavor: RcuFlavorStruct = RcuFlavorStruct {
    read_lock: urcu_memb_read_lock,
    read_unlock: urcu_memb_read_unlock,
    read_ongoing: urcu_memb_read_ongoing,
    read_quiescent_state: quiescent_noop,
    update_call_rcu: call_rcu,
    update_synchronize_rcu: urcu_memb_synchronize_rcu,
    update_defer_rcu: defer_rcu,
    thread_offline: quiescent_noop,
    thread_online: quiescent_noop,
    register_thread: urcu_memb_register_thread,
    unregister_thread: urcu_memb_unregister_thread,
    barrier,
    register_rculfhash_atfork,
    unregister_rculfhash_atfork,
    update_start_poll_synchronize_rcu: urcu_memb_start_poll_synchronize_rcu,
    update_poll_state_synchronize_rcu: urcu_memb_poll_state_synchronize_rcu,
};
