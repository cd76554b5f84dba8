//! `urcu_qsbr_flavor`: liburcu's table of the flavor's functions, which
//! liburcu-cds calls through. The top of the crate: it names every part.

use rcu_reclaim_urcu_common::flavor_table::RcuFlavorStruct;

use crate::common::{
    barrier, call_rcu, defer_rcu, register_rculfhash_atfork, unregister_rculfhash_atfork,
};
use crate::reader::{
    urcu_qsbr_poll_state_synchronize_rcu, urcu_qsbr_quiescent_state, urcu_qsbr_read_lock,
    urcu_qsbr_read_ongoing, urcu_qsbr_read_unlock, urcu_qsbr_register_thread,
    urcu_qsbr_start_poll_synchronize_rcu, urcu_qsbr_synchronize_rcu, urcu_qsbr_thread_offline,
    urcu_qsbr_thread_online, urcu_qsbr_unregister_thread,
};

/// The QSBR flavor's function table, for liburcu-cds (`rcu_flavor_qsbr`).
#[no_mangle]
pub static urcu_qsbr_flavor: RcuFlavorStruct = RcuFlavorStruct {
    read_lock: urcu_qsbr_read_lock,
    read_unlock: urcu_qsbr_read_unlock,
    read_ongoing: urcu_qsbr_read_ongoing,
    read_quiescent_state: urcu_qsbr_quiescent_state,
    update_call_rcu: call_rcu,
    update_synchronize_rcu: urcu_qsbr_synchronize_rcu,
    update_defer_rcu: defer_rcu,
    thread_offline: urcu_qsbr_thread_offline,
    thread_online: urcu_qsbr_thread_online,
    register_thread: urcu_qsbr_register_thread,
    unregister_thread: urcu_qsbr_unregister_thread,
    barrier,
    register_rculfhash_atfork,
    unregister_rculfhash_atfork,
    update_start_poll_synchronize_rcu: urcu_qsbr_start_poll_synchronize_rcu,
    update_poll_state_synchronize_rcu: urcu_qsbr_poll_state_synchronize_rcu,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_ends_with_the_polled_pair_of_0_14() {
        // A program built against 0.14's headers calls them through it.
        let f = &urcu_qsbr_flavor;
        let state = (f.update_start_poll_synchronize_rcu)();
        (f.update_synchronize_rcu)();
        assert!((f.update_poll_state_synchronize_rcu)(state));
        let poll: extern "C" fn(crate::reader::UrcuGpPollState) -> bool =
            urcu_qsbr_poll_state_synchronize_rcu;
        assert!(std::ptr::fn_addr_eq(
            f.update_poll_state_synchronize_rcu,
            poll
        ));
    }
}
