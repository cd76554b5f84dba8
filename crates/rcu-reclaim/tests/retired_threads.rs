//! A `Retired` derefs to a value that readers may still be reading, so it
//! crosses threads exactly when the cell's value could (`Send + Sync`); the
//! compile-fail half (a `Retired<Cell<_>>` sent to another thread) is the
//! doctest on `Retired`.

use rcu_reclaim::{RcuCell, Retired};

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}

#[test]
fn a_retired_value_moves_between_threads_like_its_cell() {
    assert_send::<Retired<Vec<u8>>>();
    assert_sync::<Retired<Vec<u8>>>();
    assert_send::<Retired<std::sync::Mutex<String>>>();
    let cell = RcuCell::new(vec![1u8, 2, 3]);
    let old = cell.replace(Box::new(vec![4])).unwrap();
    let len = std::thread::spawn(move || old.into_box().len())
        .join()
        .unwrap();
    assert_eq!(len, 3);
}
