//! [`ReclaimSize`]: the bytes a retired value frees, so that every default
//! way to retire a value ([`Rcu::defer_drop`](crate::Rcu::defer_drop),
//! [`RcuCell::store`](crate::RcuCell::store),
//! [`Retired::defer_drop`](crate::Retired::defer_drop)) books its real
//! size, and the [`reclaim_size!`](crate::reclaim_size) macro that lets a
//! struct opt in (`#[derive(ReclaimSize)]`, the first way, is the
//! `rcu-reclaim-derive` crate's, re-exported beside the trait).

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, LinkedList, VecDeque};
use std::mem::size_of;
use std::ops::{Bound, Range, RangeFrom, RangeInclusive, RangeTo, RangeToInclusive};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

/// Bytes a value keeps alive, for the backlog accounting of deferred drops:
/// the value itself (`size_of::<Self>()`, the `Box` it is retired in) plus
/// the heap memory it owns and frees when dropped.
///
/// Implemented for the primitives, `()`, `String`, `Vec`, `VecDeque`,
/// `LinkedList`, `Box`, `Box<[T]>`, `Box<str>`, references (the pointer
/// only), arrays, `Option`, `Cow`, tuples up to 12, the ranges (`a..b`,
/// `a..=b`, `a..`, `..b`, `..=b`, `..`) and `Bound`, the std maps and sets
/// (approximated: their buffers or nodes plus each element's own heap),
/// `PhantomData`, `AtomicPtr` (the pointer only), shared pointers (`Arc`,
/// `Rc`, counted as the pointer only: dropping one frees its pointee only
/// if it was the last, which retire time cannot know; size such a value
/// with a `_sized` call when it is known to be the last), their `Weak`s
/// (the pointer only, too), and `Pin` of a `Box`, an `Arc`, an `Rc` or a
/// reference (as the pointer it pins).
///
/// A struct or an enum of yours opts in with `#[derive(ReclaimSize)]`
/// (the `derive` feature, on by default), which counts every field's heap;
/// a field whose type has no `ReclaimSize` and owns no heap is marked
/// `#[reclaim_size(skip)]`:
///
/// ```
/// use rcu_reclaim::ReclaimSize;
/// #[derive(ReclaimSize)]
/// struct Entry { key: String, body: Vec<u8>, hits: u64 }
/// let e = Entry { key: "k".into(), body: vec![0; 4096], hits: 0 };
/// assert_eq!(e.reclaim_size(), std::mem::size_of::<Entry>() + 1 + 4096);
/// ```
///
/// or with [`reclaim_size!`](crate::reclaim_size), given the heap-owning
/// fields by name, or by hand:
///
/// ```
/// use rcu_reclaim::ReclaimSize;
/// struct Entry { key: String, body: Vec<u8>, hits: u64 }
/// impl ReclaimSize for Entry {
///     fn reclaim_size(&self) -> usize {
///         std::mem::size_of::<Self>() + self.key.heap_size() + self.body.heap_size()
///     }
/// }
/// let e = Entry { key: "k".into(), body: vec![0; 4096], hits: 0 };
/// assert_eq!(e.reclaim_size(), std::mem::size_of::<Entry>() + 1 + 4096);
/// ```
///
/// ```
/// use rcu_reclaim::ReclaimSize;
/// let v: Vec<u64> = Vec::with_capacity(100);
/// assert_eq!(v.reclaim_size(), std::mem::size_of::<Vec<u64>>() + 800);
/// ```
///
/// A type of another crate that lacks `ReclaimSize` takes neither the
/// derive nor `reclaim_size!` nor an impl of yours (the orphan rule): put
/// it in a newtype of yours that implements the trait by hand, from what
/// the type's own API says of its memory (its `capacity()`, its `len()`),
/// and derive as usual around the newtype. A field of such a type that
/// owns no heap (a handle, an id) is marked `#[reclaim_size(skip)]`
/// instead.
///
/// ```
/// use rcu_reclaim::ReclaimSize;
/// mod other_crate {
///     pub struct Buffer(Vec<u8>); // no `ReclaimSize`
///     impl Buffer {
///         pub fn with_capacity(n: usize) -> Self { Buffer(Vec::with_capacity(n)) }
///         pub fn capacity(&self) -> usize { self.0.capacity() }
///     }
/// }
/// struct Buffer(other_crate::Buffer);
/// impl ReclaimSize for Buffer {
///     fn reclaim_size(&self) -> usize {
///         std::mem::size_of::<Self>() + self.0.capacity()
///     }
/// }
/// #[derive(ReclaimSize)]
/// struct Conn { name: String, buffer: Buffer }
/// let c = Conn { name: "db".into(), buffer: Buffer(other_crate::Buffer::with_capacity(4096)) };
/// assert_eq!(c.reclaim_size(), std::mem::size_of::<Conn>() + 2 + 4096);
/// ```
#[diagnostic::on_unimplemented(
    // The message says the fix too: where rustc also suggests borrowing
    // (`&T` implements the trait, and `defer_drop`'s `T` comes from its
    // argument), it shows neither the label nor the notes below.
    message = "`{Self}` does not implement `ReclaimSize`: rcu-reclaim cannot tell how many bytes \
               retiring it frees; add `#[derive(rcu_reclaim::ReclaimSize)]` to it, or declare its \
               heap-owning fields with `rcu_reclaim::reclaim_size!`; if it is another crate's \
               type, which takes neither, wrap it in a newtype of yours that implements \
               `ReclaimSize` by hand, or, if it owns no heap, mark the field that holds it \
               `#[reclaim_size(skip)]` (or name the bytes with a `_sized` call)",
    label = "`{Self}` has no `ReclaimSize`",
    note = "for a struct or an enum of yours, `#[derive(rcu_reclaim::ReclaimSize)]` counts every \
            field (`#[reclaim_size(drops_anywhere)]` on the type if its `Drop` takes no lock); \
            a field of a derived type whose type lacks `ReclaimSize` and owns no heap is marked \
            `#[reclaim_size(skip)]` (only its inline bytes are counted)",
    note = "a type of another crate takes neither the derive, nor `reclaim_size!`, nor an impl \
            of yours (the orphan rule): if it owns heap, wrap it in a newtype of yours, \
            `struct Wrapper(other_crate::Type);`, that implements `ReclaimSize` by hand \
            (`size_of::<Self>()` plus the bytes the type's own API reports, e.g. its \
            `capacity()`), and hold the newtype in your field; if it owns none, mark that field \
            `#[reclaim_size(skip)]`",
    note = "without the derive, for a type of yours: \
            `rcu_reclaim::reclaim_size!({Self} {{ field1, field2 }});` \
            names the heap-owning fields (a generic struct's parameters in brackets: \
            `reclaim_size!(impl[T: ReclaimSize] Name<T> {{ field1 }})`), \
            `rcu_reclaim::reclaim_size!({Self});` a type that owns no heap, or implement \
            `ReclaimSize` by hand",
    note = "or name the size yourself: `RcuCell::store_weighed`, `Retired::defer_drop_sized`, \
            `Rcu::defer_drop_sized`; an `RcuHashMap` of such keys or values takes \
            `RcuHashMap::with_weigher_in(..)`, an `RcuCache` `RcuCache::builder().weigher(..)`"
)]
pub trait ReclaimSize {
    /// Whether every value of the type owns no heap memory (its
    /// [`heap_size`](ReclaimSize::heap_size) is always 0): containers then
    /// size their elements without visiting them. `false` unless a type
    /// says otherwise; a wrong `true` only under-counts.
    ///
    /// ```
    /// use rcu_reclaim::ReclaimSize;
    /// assert!(<u64 as ReclaimSize>::PLAIN && <(u8, [u32; 4]) as ReclaimSize>::PLAIN);
    /// assert!(!<String as ReclaimSize>::PLAIN);
    /// ```
    const PLAIN: bool = false;

    /// Whether dropping a value of the type runs nothing that takes a lock
    /// or waits for a grace period: only the allocator's frees, atomic
    /// counters and the like. RCU may then drop ready values of the type
    /// inside a retiring call ([`Rcu::defer_drop`](crate::Rcu::defer_drop),
    /// [`RcuCell::store`](crate::RcuCell::store),
    /// [`Retired::defer_drop`](crate::Retired::defer_drop)) on the thread
    /// that retires, where they were allocated and are still in its cache,
    /// instead of handing them to a worker on another core. A type with no
    /// drop glue (`!needs_drop`) counts as such without saying so.
    ///
    /// `false` unless a type says otherwise (the std containers say so when
    /// their elements do: `String`, `Vec<u8>`, `Box<[u64]>`,
    /// `Option<Vec<String>>`, ...). A wrong `true` is not unsound, but a
    /// `Drop` that takes a lock the retiring thread holds would deadlock it;
    /// one that waits for a grace period would panic inside a read-side
    /// section. [`drops_anywhere`] reads it.
    ///
    /// ```
    /// use rcu_reclaim::{drops_anywhere, ReclaimSize};
    /// assert!(drops_anywhere::<Vec<String>>() && drops_anywhere::<u64>());
    ///
    /// struct Logged(Vec<u8>);
    /// impl Drop for Logged {
    ///     fn drop(&mut self) {
    ///         eprintln!("freed"); // takes stderr's lock: not declared
    ///     }
    /// }
    /// rcu_reclaim::reclaim_size!(Logged { 0 });
    /// assert!(!drops_anywhere::<Logged>());
    /// ```
    const DROPS_ANYWHERE: bool = false;

    /// Whether a value of the type may hold shared pointers (`Arc`, `Rc`,
    /// and their `Weak`s, which keep the allocation alive), whose pointees
    /// [`reclaim_size`](ReclaimSize::reclaim_size) leaves out: retiring
    /// one owner frees its pointer only. That is the right
    /// count for reclamation, and the wrong one for a byte capacity: an
    /// [`RcuCache`](crate::RcuCache) weighed by `ReclaimSize` (its
    /// default weigher) refuses, at compile time, keys or values that say
    /// so, asking for a [`weigher`](crate::RcuCacheBuilder::weigher)
    /// that counts the memory an entry keeps alive.
    ///
    /// `true` for `Arc`, `Rc`, their `Weak`s and a `Pin` of either, and for
    /// the std containers, `Option`, `Box` and tuples that hold them; a
    /// type that derives `ReclaimSize` says it when a field does (one it
    /// skips aside), and a struct sized by
    /// [`reclaim_size!`](crate::reclaim_size) when a field it names does.
    ///
    /// ```
    /// use rcu_reclaim::ReclaimSize;
    /// use std::sync::Arc;
    /// assert!(<Arc<Vec<u8>> as ReclaimSize>::SHARED);
    /// assert!(<(u64, Option<Arc<str>>) as ReclaimSize>::SHARED);
    /// assert!(!<Vec<u8> as ReclaimSize>::SHARED);
    /// ```
    const SHARED: bool = false;

    /// Bytes freed when the value is dropped, itself included.
    ///
    /// It runs as the value is retired. Should it panic, the retiring call
    /// ([`RcuCell::store`](crate::RcuCell::store),
    /// [`Retired::defer_drop`](crate::Retired::defer_drop),
    /// [`Rcu::defer_drop`](crate::Rcu::defer_drop) and `defer_drop_raw`, an
    /// [`RcuHashMap`](crate::RcuHashMap) write) retires the value all the
    /// same, booking its inline size, and then passes the panic on: the
    /// value is dropped once, after its grace period, never leaked nor
    /// dropped early.
    ///
    /// ```
    /// use rcu_reclaim::ReclaimSize;
    /// let v: Vec<u32> = Vec::with_capacity(10);
    /// assert_eq!(v.reclaim_size(), std::mem::size_of::<Vec<u32>>() + 40);
    /// ```
    fn reclaim_size(&self) -> usize;

    /// Bytes the value owns beyond itself: `reclaim_size() - size_of_val(self)`,
    /// or 0 if an impl's `reclaim_size` leaves out the value's own bytes
    /// (a mistake, but one that must not panic inside a retire).
    ///
    /// ```
    /// use rcu_reclaim::ReclaimSize;
    /// assert_eq!(String::with_capacity(10).heap_size(), 10);
    /// assert_eq!(7u32.heap_size(), 0);
    /// ```
    fn heap_size(&self) -> usize
    where
        Self: Sized,
    {
        self.reclaim_size().saturating_sub(size_of::<Self>())
    }
}

/// Implements [`ReclaimSize`] for a struct as its own size plus the
/// [`heap_size`](ReclaimSize::heap_size) of the fields named (each must
/// implement `ReclaimSize`); fields left out count only their inline bytes.
///
/// `#[derive(ReclaimSize)]` does the same for every field, and for enums
/// (a field added later is counted without being listed): prefer it for a
/// type of your own. The macro stays for the heapless form below, which
/// checks at compile time that the type has no drop glue, and for the
/// code that uses it.
///
/// ```
/// use rcu_reclaim::{reclaim_size, ReclaimSize};
/// struct Page { title: String, body: Vec<u8>, views: u64 }
/// reclaim_size!(Page { title, body });
/// let p = Page { title: "home".into(), body: vec![0; 1 << 16], views: 0 };
/// assert_eq!(p.reclaim_size(), std::mem::size_of::<Page>() + 4 + (1 << 16));
/// ```
///
/// With `; drops_anywhere` after the fields, it also declares
/// [`DROPS_ANYWHERE`](ReclaimSize::DROPS_ANYWHERE): the struct has no
/// `Drop` of its own that takes a lock or waits for a grace period, and
/// every field drops anywhere (checked for the fields named; a field left
/// out is your word). Values retired through the default calls are then
/// freed on the retiring thread once their grace period has passed.
///
/// ```
/// use rcu_reclaim::{drops_anywhere, reclaim_size};
/// struct Route { prefix: String, hops: Vec<u32> }
/// reclaim_size!(Route { prefix, hops }; drops_anywhere);
/// assert!(drops_anywhere::<Route>());
/// ```
///
/// A generic struct takes its parameters, with the bounds the impl needs,
/// in brackets after `impl` (the fields named must then implement
/// `ReclaimSize`: bound their type parameters by it):
///
/// ```
/// use rcu_reclaim::{drops_anywhere, reclaim_size, ReclaimSize};
/// struct Tagged<T> { tag: String, value: T }
/// reclaim_size!(impl[T: ReclaimSize] Tagged<T> { tag, value }; drops_anywhere);
/// let t = Tagged { tag: "v".into(), value: vec![0u8; 100] };
/// assert_eq!(t.reclaim_size(), std::mem::size_of::<Tagged<Vec<u8>>>() + 1 + 100);
/// assert!(drops_anywhere::<Tagged<Vec<u8>>>());
/// ```
///
/// Brackets, not the angle brackets of an `impl` block: `impl<T> Tagged<T>`
/// is refused with an error that shows this form, and `Tagged<T> { .. }`
/// without `impl[..]` does not declare `T` ("cannot find type `T`"). A
/// generic struct whose fields own no heap (a lock-free stack's node,
/// whose element is moved out before the node is retired) names no field:
///
/// ```
/// use std::mem::ManuallyDrop;
/// use std::sync::atomic::AtomicPtr;
/// use rcu_reclaim::{reclaim_size, ReclaimSize};
/// struct Node<T> { data: ManuallyDrop<T>, next: AtomicPtr<Node<T>> }
/// reclaim_size!(impl[T] Node<T> {});
/// let n = Node { data: ManuallyDrop::new(String::from("moved out")), next: AtomicPtr::default() };
/// assert_eq!(n.reclaim_size(), std::mem::size_of::<Node<String>>());
/// # drop(ManuallyDrop::into_inner(n.data));
/// ```
///
/// A type that owns no heap memory at all (a unit struct, an enum of
/// plain variants, a struct of numbers) is named alone: its size is
/// `size_of` the type. That form refuses, at compile time, a type with
/// drop glue, whose heap it would leave out; one that owns no heap but has
/// a `Drop` of its own is named with no fields, `reclaim_size!(T {})`.
/// That form books the inline bytes and checks nothing: never use it for
/// an enum whose variants own heap memory (implement [`ReclaimSize`] by
/// hand, below), which it would count at `size_of` alone.
///
/// ```
/// use rcu_reclaim::{reclaim_size, ReclaimSize, RcuCell};
/// #[derive(Clone, Copy)]
/// enum Protocol { Tcp, Udp }
/// reclaim_size!(Protocol);
/// struct Limits { rps: u32, burst: u32 }
/// reclaim_size!(Limits; drops_anywhere);
/// assert_eq!(Protocol::Udp.reclaim_size(), std::mem::size_of::<Protocol>());
/// let proto = RcuCell::new(Protocol::Tcp);
/// proto.store(Box::new(Protocol::Udp));
/// ```
///
/// ```compile_fail
/// // `Route` owns a `String`: the heapless form would book 24 bytes.
/// struct Route { prefix: String }
/// rcu_reclaim::reclaim_size!(Route);
/// ```
///
/// The macro reads named fields (`self.field`), so an enum whose variants
/// own heap memory derives `ReclaimSize`, or implements it by hand, with a
/// `match` (`reclaim_size!(Value { Big })` fails with "no field `Big` on
/// type `&Value`"):
///
/// ```
/// use rcu_reclaim::{ReclaimSize, RcuCell};
/// enum Value { Small(u64), Big(Vec<u8>), Text { body: String } }
/// impl ReclaimSize for Value {
///     fn reclaim_size(&self) -> usize {
///         std::mem::size_of::<Self>()
///             + match self {
///                 Value::Small(_) => 0,
///                 Value::Big(bytes) => bytes.heap_size(),
///                 Value::Text { body } => body.heap_size(),
///             }
///     }
///     // Each variant's fields drop anywhere (no `Drop` that takes a lock).
///     const DROPS_ANYWHERE: bool = true;
/// }
/// assert_eq!(Value::Big(vec![0; 100]).reclaim_size(), std::mem::size_of::<Value>() + 100);
/// let cell = RcuCell::new(Value::Small(1));
/// cell.store(Box::new(Value::Text { body: "hello".into() }));
/// ```
#[macro_export]
macro_rules! reclaim_size {
    (impl[$($gen:tt)*] $ty:ty { $($field:tt),* $(,)? }) => {
        impl<$($gen)*> $crate::ReclaimSize for $ty {
            const SHARED: ::core::primitive::bool =
                false $(|| $crate::__field_shared(|v: &Self| &v.$field))*;
            fn reclaim_size(&self) -> ::core::primitive::usize {
                ::core::mem::size_of::<Self>()
                    $(+ $crate::ReclaimSize::heap_size(&self.$field))*
            }
        }
    };
    (impl[$($gen:tt)*] $ty:ty { $($field:tt),* $(,)? }; drops_anywhere) => {
        impl<$($gen)*> $crate::ReclaimSize for $ty {
            const DROPS_ANYWHERE: ::core::primitive::bool =
                true $(&& $crate::__field_drops_anywhere(|v: &Self| &v.$field))*;
            const SHARED: ::core::primitive::bool =
                false $(|| $crate::__field_shared(|v: &Self| &v.$field))*;
            fn reclaim_size(&self) -> ::core::primitive::usize {
                ::core::mem::size_of::<Self>()
                    $(+ $crate::ReclaimSize::heap_size(&self.$field))*
            }
        }
    };
    // `impl<T> Name<T> ..`, the spelling of an `impl` block: the brackets
    // are what the macro reads (a `ty` fragment cannot follow `impl<..>`).
    (impl < $($rest:tt)*) => {
        ::std::compile_error!(
            "`reclaim_size!` takes a generic struct's parameters in brackets, not angle \
             brackets: write `reclaim_size!(impl[T: ReclaimSize] Name<T> { field1, field2 })` \
             (bound by `ReclaimSize` the parameters of the fields named; `impl[T] Name<T> {}` \
             for a struct whose fields own no heap)"
        );
    };
    ($ty:ty { $($field:tt),* $(,)? }) => {
        $crate::reclaim_size!(impl[] $ty { $($field),* });
    };
    ($ty:ty { $($field:tt),* $(,)? }; drops_anywhere) => {
        $crate::reclaim_size!(impl[] $ty { $($field),* }; drops_anywhere);
    };
    ($ty:ty) => {
        $crate::__reclaim_size_owns_no_heap!($ty);
        $crate::reclaim_size!(impl[] $ty {});
    };
    ($ty:ty; drops_anywhere) => {
        $crate::__reclaim_size_owns_no_heap!($ty);
        $crate::reclaim_size!(impl[] $ty {}; drops_anywhere);
    };
}

/// For [`reclaim_size!`](crate::reclaim_size)`(T)`, the form for types that
/// own no heap memory: refuses, at compile time, a type with drop glue
/// (a `String`, `Vec` or `Box` field, or a `Drop` of its own), which would
/// otherwise book its inline bytes alone. Such a type names its
/// heap-owning fields, or `{}` if it owns none.
#[doc(hidden)]
#[macro_export]
macro_rules! __reclaim_size_owns_no_heap {
    ($ty:ty) => {
        const _: () = ::std::assert!(
            !::std::mem::needs_drop::<$ty>(),
            ::std::concat!(
                "`reclaim_size!(",
                ::std::stringify!($ty),
                ")` is for types that own no heap memory, and `",
                ::std::stringify!($ty),
                "` has drop glue (a field that owns memory, or a `Drop` of its own). A struct \
                 or enum of yours takes `#[derive(ReclaimSize)]`, which counts every field; a \
                 struct can also name its fields that own heap memory, `reclaim_size!(",
                ::std::stringify!($ty),
                " {{ field1, field2 }})`, so that their bytes are booked; only a type whose drop \
                 glue frees no heap memory (a `Drop` of its own, say) is `reclaim_size!(",
                ::std::stringify!($ty),
                " {{}})`"
            )
        );
    };
}

/// Whether RCU may drop a value of type `T` inside a retiring call, on the
/// thread that retires it: `T` has no drop glue, or declares
/// [`ReclaimSize::DROPS_ANYWHERE`].
///
/// ```
/// use rcu_reclaim::drops_anywhere;
/// assert!(drops_anywhere::<[u8; 64]>());
/// assert!(drops_anywhere::<(String, Box<[u64]>)>());
/// // The last `Arc`'s drop runs the `String`'s: only types without drop glue.
/// assert!(!drops_anywhere::<std::sync::Arc<String>>());
/// assert!(drops_anywhere::<std::sync::Arc<[u8]>>());
/// ```
pub const fn drops_anywhere<T: ReclaimSize + ?Sized>() -> bool {
    !std::mem::needs_drop::<T>() || T::DROPS_ANYWHERE
}

/// For [`reclaim_size!`](crate::reclaim_size)`(..; drops_anywhere)`: whether
/// the field `f` selects drops anywhere (the closure only names the field's
/// type; it is never called).
#[doc(hidden)]
pub const fn field_drops_anywhere<S, F: ReclaimSize>(_f: fn(&S) -> &F) -> bool {
    drops_anywhere::<F>()
}

/// For `#[derive(ReclaimSize)]`: what the derive reads of one field's type.
/// Every use goes through [`derive_field`], so that a field type without
/// `ReclaimSize` is one error (the same at each use, reported once), at
/// the field, with the trait's notes.
#[doc(hidden)]
pub struct DeriveField<F> {
    /// [`ReclaimSize::PLAIN`].
    pub plain: bool,
    /// [`ReclaimSize::SHARED`].
    pub shared: bool,
    /// [`drops_anywhere`].
    pub drops_anywhere: bool,
    /// [`ReclaimSize::heap_size`].
    pub heap_size: fn(&F) -> usize,
}

/// For `#[derive(ReclaimSize)]`: see [`DeriveField`].
#[doc(hidden)]
pub const fn derive_field<F: ReclaimSize>() -> DeriveField<F> {
    DeriveField {
        plain: F::PLAIN,
        shared: F::SHARED,
        drops_anywhere: drops_anywhere::<F>(),
        heap_size: F::heap_size,
    }
}

/// For `#[derive(ReclaimSize)]` on a `#[repr(packed)]` struct, whose
/// fields may be unaligned and so are copied out to be sized (a reference
/// to one is refused, E0793): the field's type must be `Copy`, and the
/// error, at the field's type, says what to do when it is not.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`#[derive(ReclaimSize)]` cannot read a field of type `{Self}` in a \
               `#[repr(packed)]` struct: a packed field may be unaligned, so the derive copies \
               each field out to size it, and `{Self}` is not `Copy`",
    label = "a field of a packed struct that is not `Copy`",
    note = "mark the field `#[reclaim_size(skip)]` (only its inline bytes are counted: right for \
            a field that owns no heap), or remove `#[repr(packed)]` (the derive then reads \
            every field by reference), or retire the value with a `_sized` call \
            (`Rcu::defer_drop_sized`, `RcuCell::store_weighed`) that names its bytes"
)]
pub trait PackedField {}

impl<T: Copy> PackedField for T {}

/// For `#[derive(ReclaimSize)]` on a `#[repr(packed)]` struct: see
/// [`PackedField`]. Called, for nothing but its bound, before a field is
/// copied out.
#[doc(hidden)]
#[inline(always)]
pub const fn derive_packed_field<F: PackedField>() {}

/// For [`reclaim_size!`](crate::reclaim_size): whether the field `f`
/// selects may hold shared pointers ([`ReclaimSize::SHARED`]; the closure
/// only names the field's type; it is never called).
#[doc(hidden)]
pub const fn field_shared<S, F: ReclaimSize + ?Sized>(_f: fn(&S) -> &F) -> bool {
    F::SHARED
}

macro_rules! plain {
    ($($t:ty),*) => {$(
        impl ReclaimSize for $t {
            const PLAIN: bool = true;
            #[inline]
            fn reclaim_size(&self) -> usize {
                size_of::<Self>()
            }
        }
    )*};
}

plain!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    (),
    // Keys and values of routing tables, timers and the like.
    std::net::Ipv4Addr,
    std::net::Ipv6Addr,
    std::net::IpAddr,
    std::net::SocketAddrV4,
    std::net::SocketAddrV6,
    std::net::SocketAddr,
    std::time::Duration,
    std::time::Instant,
    std::time::SystemTime,
    std::cmp::Ordering,
    // `..`: no ends.
    std::ops::RangeFull,
    std::num::NonZeroU8,
    std::num::NonZeroU16,
    std::num::NonZeroU32,
    std::num::NonZeroU64,
    std::num::NonZeroU128,
    std::num::NonZeroUsize,
    std::num::NonZeroI8,
    std::num::NonZeroI16,
    std::num::NonZeroI32,
    std::num::NonZeroI64,
    std::num::NonZeroI128,
    std::num::NonZeroIsize,
    // Counters kept beside a value (hits, a version).
    std::sync::atomic::AtomicBool,
    std::sync::atomic::AtomicU8,
    std::sync::atomic::AtomicU16,
    std::sync::atomic::AtomicU32,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicI8,
    std::sync::atomic::AtomicI16,
    std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicI64,
    std::sync::atomic::AtomicIsize
);

/// Owned strings of the OS and paths: their inline size and capacity.
macro_rules! os_string {
    ($($t:ty),*) => {$(
        impl ReclaimSize for $t {
            const DROPS_ANYWHERE: bool = true;
            fn reclaim_size(&self) -> usize {
                size_of::<Self>() + self.capacity()
            }
        }
    )*};
}

os_string!(std::ffi::OsString, std::path::PathBuf);

impl ReclaimSize for std::ffi::CString {
    const DROPS_ANYWHERE: bool = true;
    fn reclaim_size(&self) -> usize {
        size_of::<Self>() + self.as_bytes_with_nul().len()
    }
}

/// The heap of `items` beyond their inline size; no loop for plain types.
#[inline]
fn items_heap<'a, T: ReclaimSize + 'a>(items: impl IntoIterator<Item = &'a T>) -> usize {
    if T::PLAIN {
        0
    } else {
        items.into_iter().map(ReclaimSize::heap_size).sum()
    }
}

impl ReclaimSize for String {
    const DROPS_ANYWHERE: bool = true;
    fn reclaim_size(&self) -> usize {
        size_of::<Self>() + self.capacity()
    }
}

impl ReclaimSize for Box<str> {
    const DROPS_ANYWHERE: bool = true;
    fn reclaim_size(&self) -> usize {
        size_of::<Self>() + self.len()
    }
}

/// The buffer (its capacity) plus each element's own heap; visits the
/// elements only when `T` is not [`PLAIN`](ReclaimSize::PLAIN).
impl<T: ReclaimSize> ReclaimSize for Vec<T> {
    const SHARED: bool = T::SHARED;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>() + self.capacity() * size_of::<T>() + items_heap(self.iter())
    }
}

/// As `Vec`.
impl<T: ReclaimSize> ReclaimSize for VecDeque<T> {
    const SHARED: bool = T::SHARED;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>() + self.capacity() * size_of::<T>() + items_heap(self.iter())
    }
}

/// A node per element (the element and its two links, one allocation
/// each) plus each element's own heap.
///
/// ```
/// use std::collections::LinkedList;
/// use rcu_reclaim::{drops_anywhere, ReclaimSize};
/// let list: LinkedList<String> = ["ab", "cde"].map(String::from).into();
/// // Two nodes of a `String` and two links each, and the strings' 5 bytes.
/// let node = std::mem::size_of::<String>() + 2 * std::mem::size_of::<usize>();
/// assert_eq!(list.heap_size(), 2 * node + 5);
/// assert!(drops_anywhere::<LinkedList<String>>());
/// ```
impl<T: ReclaimSize> ReclaimSize for LinkedList<T> {
    const SHARED: bool = T::SHARED;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        // std's node: `next` and `prev` (`Option<NonNull<Node<T>>>`, a
        // pointer each) and the element, laid out as this tuple is.
        let node = size_of::<(
            Option<std::ptr::NonNull<u8>>,
            Option<std::ptr::NonNull<u8>>,
            T,
        )>();
        size_of::<Self>() + self.len().saturating_mul(node) + items_heap(self.iter())
    }
}

impl<T: ReclaimSize> ReclaimSize for Box<[T]> {
    const SHARED: bool = T::SHARED;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>() + std::mem::size_of_val::<[T]>(self) + items_heap(self.iter())
    }
}

impl<T: ReclaimSize> ReclaimSize for Box<T> {
    const SHARED: bool = T::SHARED;
    const PLAIN: bool = false;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>() + (**self).reclaim_size()
    }
}

impl<T: ReclaimSize, const N: usize> ReclaimSize for [T; N] {
    const SHARED: bool = T::SHARED;
    const PLAIN: bool = T::PLAIN;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>() + items_heap(self.iter())
    }
}

impl<T: ReclaimSize> ReclaimSize for Option<T> {
    const SHARED: bool = T::SHARED;
    const PLAIN: bool = T::PLAIN;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>() + self.as_ref().map_or(0, ReclaimSize::heap_size)
    }
}

/// What the value that is held owns: an error cached beside values (a
/// negative-cache entry, `Result<Page, String>`) counts as a value does.
///
/// ```
/// use rcu_reclaim::ReclaimSize;
/// let ok: Result<Vec<u8>, String> = Ok(vec![0; 100]);
/// let err: Result<Vec<u8>, String> = Err(String::with_capacity(10));
/// assert_eq!(ok.heap_size(), 100);
/// assert_eq!(err.heap_size(), 10);
/// ```
impl<T: ReclaimSize, E: ReclaimSize> ReclaimSize for Result<T, E> {
    const SHARED: bool = T::SHARED || E::SHARED;
    const PLAIN: bool = T::PLAIN && E::PLAIN;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>() && drops_anywhere::<E>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
            + match self {
                Ok(t) => t.heap_size(),
                Err(e) => e.heap_size(),
            }
    }
}

/// As `Vec` (a timer queue, a top-k heap).
///
/// ```
/// use std::collections::BinaryHeap;
/// use rcu_reclaim::ReclaimSize;
/// let heap: BinaryHeap<u64> = BinaryHeap::with_capacity(16);
/// assert_eq!(heap.heap_size(), 16 * 8);
/// ```
impl<T: ReclaimSize> ReclaimSize for BinaryHeap<T> {
    const SHARED: bool = T::SHARED;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>() + self.capacity() * size_of::<T>() + items_heap(self.iter())
    }
}

/// Wrappers of one value (`Reverse` in a heap's key, `Wrapping` counters):
/// what the value owns.
macro_rules! wrapper {
    ($($m:ident :: $w:ident),*) => {$(
        /// What the wrapped value owns.
        ///
        /// ```
        /// use rcu_reclaim::ReclaimSize;
        #[doc = concat!("let w = std::", stringify!($m), "::", stringify!($w), "(String::with_capacity(5));")]
        /// assert_eq!(w.heap_size(), 5);
        /// ```
        impl<T: ReclaimSize> ReclaimSize for std::$m::$w<T> {
            const SHARED: bool = T::SHARED;
            const PLAIN: bool = T::PLAIN;
            const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
            fn reclaim_size(&self) -> usize {
                size_of::<Self>() + self.0.heap_size()
            }
        }
    )*};
}

wrapper!(cmp::Reverse, num::Wrapping);

/// What the bounds own (a range of keys kept beside a value, a lease's
/// span of ids): both ends of `start..end`, and each of the other ranges'
/// ends; `..` owns nothing.
///
/// ```
/// use rcu_reclaim::{drops_anywhere, ReclaimSize};
/// let ids = 10u64..20;
/// assert_eq!(ids.reclaim_size(), std::mem::size_of::<std::ops::Range<u64>>());
/// let keys = String::from("apple")..String::with_capacity(10);
/// assert_eq!(keys.heap_size(), 5 + 10);
/// assert!(<std::ops::Range<u64> as ReclaimSize>::PLAIN);
/// assert!(drops_anywhere::<std::ops::Range<String>>());
/// ```
impl<T: ReclaimSize> ReclaimSize for Range<T> {
    const SHARED: bool = T::SHARED;
    const PLAIN: bool = T::PLAIN;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>() + self.start.heap_size() + self.end.heap_size()
    }
}

/// As `Range`: both ends of `start..=end`.
///
/// ```
/// use rcu_reclaim::ReclaimSize;
/// let keys = String::from("a")..=String::from("zz");
/// assert_eq!(keys.heap_size(), 1 + 2);
/// assert!(<std::ops::RangeInclusive<u32> as ReclaimSize>::PLAIN);
/// ```
impl<T: ReclaimSize> ReclaimSize for RangeInclusive<T> {
    const SHARED: bool = T::SHARED;
    const PLAIN: bool = T::PLAIN;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>() + self.start().heap_size() + self.end().heap_size()
    }
}

/// As `Range`, for the ranges of one end: what the end owns.
macro_rules! one_ended_range {
    ($($r:ident . $end:ident : $example:literal),*) => {$(
        /// As `Range`: what its one end owns.
        ///
        /// ```
        /// use rcu_reclaim::ReclaimSize;
        #[doc = concat!("let r = ", $example, ";")]
        /// assert_eq!(r.heap_size(), 3);
        #[doc = concat!("assert!(<std::ops::", stringify!($r), "<u64> as ReclaimSize>::PLAIN);")]
        /// ```
        impl<T: ReclaimSize> ReclaimSize for $r<T> {
            const SHARED: bool = T::SHARED;
            const PLAIN: bool = T::PLAIN;
            const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
            fn reclaim_size(&self) -> usize {
                size_of::<Self>() + self.$end.heap_size()
            }
        }
    )*};
}

one_ended_range!(
    RangeFrom.start: "String::from(\"abc\")..",
    RangeTo.end: "..String::from(\"abc\")",
    RangeToInclusive.end: "..=String::from(\"abc\")"
);

/// What the bound's value owns, if it has one (a range query's ends).
///
/// ```
/// use std::ops::Bound;
/// use rcu_reclaim::ReclaimSize;
/// assert_eq!(Bound::Included(String::from("abc")).heap_size(), 3);
/// assert_eq!(Bound::<String>::Unbounded.heap_size(), 0);
/// ```
impl<T: ReclaimSize> ReclaimSize for Bound<T> {
    const SHARED: bool = T::SHARED;
    const PLAIN: bool = T::PLAIN;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
            + match self {
                Bound::Included(t) | Bound::Excluded(t) => t.heap_size(),
                Bound::Unbounded => 0,
            }
    }
}

/// What the guarded value owns, read with `try_lock`: sizing never waits
/// for the lock (a retiring call must not block on it, and may be made by
/// the thread that holds it). A mutex held, or poisoned and held, when the
/// value is weighed is counted by its inline bytes alone (an under-count,
/// as [`PLAIN`](ReclaimSize::PLAIN) allows); a poisoned one is read all the
/// same. A per-entry counter or buffer in a cache's value is the usual case.
///
/// ```
/// use std::sync::Mutex;
/// use rcu_reclaim::{drops_anywhere, ReclaimSize};
/// let m = Mutex::new(vec![0u8; 64]);
/// assert_eq!(m.heap_size(), 64);
/// let held = m.lock().unwrap();
/// assert_eq!(m.heap_size(), 0); // not waited for
/// drop(held);
/// assert!(drops_anywhere::<Mutex<Vec<u8>>>());
/// ```
impl<T: ReclaimSize> ReclaimSize for std::sync::Mutex<T> {
    const SHARED: bool = T::SHARED;
    const PLAIN: bool = T::PLAIN;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        use std::sync::TryLockError;
        let heap = match self.try_lock() {
            Ok(v) => v.heap_size(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().heap_size(),
            Err(TryLockError::WouldBlock) => 0,
        };
        size_of::<Self>() + heap
    }
}

/// As `Mutex`, with `try_read`: a lock held for writing when the value is
/// weighed counts its inline bytes alone.
///
/// ```
/// use std::sync::RwLock;
/// use rcu_reclaim::ReclaimSize;
/// let l = RwLock::new(String::with_capacity(32));
/// let _reader = l.read().unwrap(); // readers do not keep it from being weighed
/// assert_eq!(l.heap_size(), 32);
/// ```
impl<T: ReclaimSize> ReclaimSize for std::sync::RwLock<T> {
    const SHARED: bool = T::SHARED;
    const PLAIN: bool = T::PLAIN;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        use std::sync::TryLockError;
        let heap = match self.try_read() {
            Ok(v) => v.heap_size(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().heap_size(),
            Err(TryLockError::WouldBlock) => 0,
        };
        size_of::<Self>() + heap
    }
}

/// What the value owns once set (a lazily computed part of a value).
///
/// ```
/// use std::sync::OnceLock;
/// use rcu_reclaim::ReclaimSize;
/// let once: OnceLock<Vec<u8>> = OnceLock::new();
/// assert_eq!(once.heap_size(), 0);
/// once.set(vec![0; 10]).unwrap();
/// assert_eq!(once.heap_size(), 10);
/// ```
impl<T: ReclaimSize> ReclaimSize for std::sync::OnceLock<T> {
    const SHARED: bool = T::SHARED;
    const PLAIN: bool = T::PLAIN;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>() + self.get().map_or(0, ReclaimSize::heap_size)
    }
}

macro_rules! tuple {
    ($($t:ident . $i:tt),+) => {
        impl<$($t: ReclaimSize),+> ReclaimSize for ($($t,)+) {
            const PLAIN: bool = $($t::PLAIN)&&+;
            const DROPS_ANYWHERE: bool = $(drops_anywhere::<$t>())&&+;
            const SHARED: bool = $($t::SHARED)||+;
            fn reclaim_size(&self) -> usize {
                size_of::<Self>() $(+ self.$i.heap_size())+
            }
        }
    };
}

tuple!(A.0);
tuple!(A.0, B.1);
tuple!(A.0, B.1, C.2);
tuple!(A.0, B.1, C.2, D.3);
// Up to 12, as std's traits: a connection's 5-tuple (addresses, ports and
// protocol) is a routing or conntrack table's key.
tuple!(A.0, B.1, C.2, D.3, E.4);
tuple!(A.0, B.1, C.2, D.3, E.4, F.5);
tuple!(A.0, B.1, C.2, D.3, E.4, F.5, G.6);
tuple!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7);
tuple!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8);
tuple!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9);
tuple!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10);
tuple!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11);

/// The pointer only: the pointee is freed by the last owner's drop, which
/// retiring one owner does not know it is.
impl<T: ?Sized> ReclaimSize for Arc<T> {
    const SHARED: bool = true;
    const PLAIN: bool = true;
    /// Only if the pointee has no drop glue: the last owner's drop runs it.
    const DROPS_ANYWHERE: bool = !std::mem::needs_drop::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
    }
}

/// As `Arc`: the pointer only.
impl<T: ?Sized> ReclaimSize for Rc<T> {
    const SHARED: bool = true;
    const PLAIN: bool = true;
    /// As `Arc`.
    const DROPS_ANYWHERE: bool = !std::mem::needs_drop::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
    }
}

/// A weak pointer: the pointer only, as `Arc` (it owns none of the
/// value's bytes, nor its heap).
///
/// Still [`SHARED`](ReclaimSize::SHARED): the last `Weak` keeps the
/// allocation (the value's inline bytes, the whole slice of an
/// `Arc<[T]>`) alive after the last `Arc` is gone, so it is refused by a
/// cache weighed by `ReclaimSize`, as an `Arc` is. And
/// [`DROPS_ANYWHERE`](ReclaimSize::DROPS_ANYWHERE) whatever `T` is: a
/// `Weak`'s drop never drops the value (the last `Arc`'s does); it only
/// lowers the weak count and, if it was the last pointer of any kind,
/// frees the allocation.
///
/// ```
/// use std::sync::{Arc, Weak};
/// use rcu_reclaim::{drops_anywhere, ReclaimSize};
/// let owner = Arc::new(vec![0u8; 4096]);
/// let weak: Weak<Vec<u8>> = Arc::downgrade(&owner);
/// assert_eq!(weak.reclaim_size(), std::mem::size_of::<Weak<Vec<u8>>>());
/// assert!(<Weak<Vec<u8>> as ReclaimSize>::SHARED && <Weak<Vec<u8>> as ReclaimSize>::PLAIN);
/// // Unlike `Arc<String>`'s, its drop runs no `String`'s.
/// assert!(drops_anywhere::<Weak<String>>() && !drops_anywhere::<Arc<String>>());
/// ```
impl<T: ?Sized> ReclaimSize for std::sync::Weak<T> {
    const SHARED: bool = true;
    const PLAIN: bool = true;
    /// Whatever `T` is: the drop never drops a `T`, it only frees memory.
    const DROPS_ANYWHERE: bool = true;
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
    }
}

/// As `std::sync::Weak`: the pointer only, `SHARED`, and dropped anywhere.
///
/// ```
/// use std::rc::{Rc, Weak};
/// use rcu_reclaim::{drops_anywhere, ReclaimSize};
/// let owner = Rc::new(String::from("parent"));
/// let weak: Weak<String> = Rc::downgrade(&owner);
/// assert_eq!(weak.reclaim_size(), std::mem::size_of::<Weak<String>>());
/// assert!(<Weak<String> as ReclaimSize>::SHARED && drops_anywhere::<Weak<String>>());
/// ```
impl<T: ?Sized> ReclaimSize for std::rc::Weak<T> {
    const SHARED: bool = true;
    const PLAIN: bool = true;
    /// As `std::sync::Weak`'s.
    const DROPS_ANYWHERE: bool = true;
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
    }
}

/// As the `Box` it pins: the box and the value in it, with the value's
/// heap (a pinned future or a self-referential node kept in a value).
///
/// `Pin` is implemented for the std pointers (`Box`, `Arc`, `Rc`, `&T`),
/// not for any `Pin<P>`: a `Pin` hands out no `&P` to size it by, and
/// sizing through a `P` of another crate would call its code on a
/// pointer whose pointee was promised never to move.
///
/// ```
/// use rcu_reclaim::{drops_anywhere, ReclaimSize};
/// let pinned = Box::pin(vec![0u8; 100]);
/// assert_eq!(
///     pinned.reclaim_size(),
///     std::mem::size_of::<Box<Vec<u8>>>() + std::mem::size_of::<Vec<u8>>() + 100
/// );
/// assert!(drops_anywhere::<std::pin::Pin<Box<String>>>());
/// ```
impl<T: ReclaimSize> ReclaimSize for Pin<Box<T>> {
    const SHARED: bool = T::SHARED;
    const PLAIN: bool = false;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>() + T::reclaim_size(&**self)
    }
}

/// As the `Arc` it pins: the pointer only.
///
/// ```
/// use std::pin::Pin;
/// use std::sync::Arc;
/// use rcu_reclaim::{drops_anywhere, ReclaimSize};
/// let pinned = Arc::pin(String::from("shared"));
/// assert_eq!(pinned.reclaim_size(), std::mem::size_of::<Arc<String>>());
/// assert!(<Pin<Arc<String>> as ReclaimSize>::SHARED);
/// assert!(!drops_anywhere::<Pin<Arc<String>>>());
/// ```
impl<T: ?Sized> ReclaimSize for Pin<Arc<T>> {
    const SHARED: bool = true;
    const PLAIN: bool = true;
    /// As `Arc`'s.
    const DROPS_ANYWHERE: bool = !std::mem::needs_drop::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
    }
}

/// As the `Rc` it pins: the pointer only.
///
/// ```
/// use std::pin::Pin;
/// use std::rc::Rc;
/// use rcu_reclaim::ReclaimSize;
/// let pinned = Rc::pin(7u64);
/// assert_eq!(pinned.reclaim_size(), std::mem::size_of::<Rc<u64>>());
/// assert!(<Pin<Rc<u64>> as ReclaimSize>::SHARED);
/// ```
impl<T: ?Sized> ReclaimSize for Pin<Rc<T>> {
    const SHARED: bool = true;
    const PLAIN: bool = true;
    /// As `Rc`'s.
    const DROPS_ANYWHERE: bool = !std::mem::needs_drop::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
    }
}

/// As the reference it pins: the reference only.
///
/// ```
/// use std::pin::Pin;
/// use rcu_reclaim::ReclaimSize;
/// static VALUE: u64 = 7;
/// let pinned: Pin<&'static u64> = Pin::static_ref(&VALUE);
/// assert_eq!(pinned.reclaim_size(), std::mem::size_of::<&u64>());
/// ```
impl<T: ?Sized> ReclaimSize for Pin<&T> {
    const PLAIN: bool = true;
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
    }
}

/// Nothing at all: a marker of a generic struct (often beside an
/// `AtomicPtr<T>` of a lock-free node), so that such a struct can derive
/// [`ReclaimSize`] without marking it `#[reclaim_size(skip)]`.
///
/// ```
/// use std::marker::PhantomData;
/// use rcu_reclaim::ReclaimSize;
/// #[derive(ReclaimSize)]
/// struct Tagged<T> { name: String, _kind: PhantomData<fn() -> T> }
/// let t: Tagged<u8> = Tagged { name: "abc".into(), _kind: PhantomData };
/// assert_eq!(t.reclaim_size(), std::mem::size_of::<Tagged<u8>>() + 3);
/// ```
impl<T: ?Sized> ReclaimSize for std::marker::PhantomData<T> {
    const PLAIN: bool = true;
    const DROPS_ANYWHERE: bool = true;
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
    }
}

/// The pointer only: an `AtomicPtr` owns nothing its drop frees (a
/// lock-free node's link; what it points to is retired on its own).
///
/// ```
/// use std::sync::atomic::AtomicPtr;
/// use rcu_reclaim::ReclaimSize;
/// #[derive(ReclaimSize)]
/// struct Node { key: u64, next: AtomicPtr<Node> }
/// let n = Node { key: 1, next: AtomicPtr::default() };
/// assert_eq!(n.reclaim_size(), std::mem::size_of::<Node>());
/// ```
impl<T> ReclaimSize for std::sync::atomic::AtomicPtr<T> {
    const PLAIN: bool = true;
    const DROPS_ANYWHERE: bool = true;
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
    }
}

/// A borrowed `Cow` owns nothing; an owned one what its value owns.
///
/// ```
/// use std::borrow::Cow;
/// use rcu_reclaim::ReclaimSize;
/// let borrowed: Cow<'static, str> = Cow::Borrowed("static");
/// let owned: Cow<'static, str> = Cow::Owned(String::with_capacity(100));
/// assert_eq!(borrowed.heap_size(), 0);
/// assert_eq!(owned.heap_size(), 100);
/// ```
impl<B> ReclaimSize for std::borrow::Cow<'_, B>
where
    B: ?Sized + ToOwned,
    B::Owned: ReclaimSize,
{
    const SHARED: bool = <B::Owned as ReclaimSize>::SHARED;
    const DROPS_ANYWHERE: bool = drops_anywhere::<B::Owned>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
            + match self {
                std::borrow::Cow::Borrowed(_) => 0,
                std::borrow::Cow::Owned(o) => o.heap_size(),
            }
    }
}

/// The reference only: it owns nothing (e.g. a `&'static str` map key).
impl<T: ?Sized> ReclaimSize for &T {
    const PLAIN: bool = true;
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
    }
}

/// The heap of std's hash table (hashbrown's layout) with `capacity`
/// (what `capacity()` says) and slots of `slot` bytes: a slot and a
/// control byte per bucket, and a group's 16 control bytes more. The
/// table keeps a bucket in eight free (`capacity` is 7/8 of the buckets,
/// one less for tables of 8 buckets or fewer), so counting `capacity`
/// slots booked an eighth too little (0.88-0.89 of what a table of
/// 100,000 entries holds).
fn hash_table_bytes(capacity: usize, slot: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        capacity + 1
    } else {
        capacity / 7 * 8
    };
    buckets
        .saturating_mul(slot.saturating_add(1))
        .saturating_add(16)
}

/// An approximation: the table (its buckets: a key and a value, plus a
/// control byte each) and each entry's own heap.
///
/// ```
/// use std::collections::HashMap;
/// use rcu_reclaim::ReclaimSize;
/// let m: HashMap<u64, u64> = (0..100_000).map(|i| (i, i)).collect();
/// // 131,072 buckets of 16 bytes and a control byte, and 16 more
/// assert_eq!(m.heap_size(), 131_072 * 17 + 16);
/// ```
impl<K: ReclaimSize, V: ReclaimSize, S> ReclaimSize for HashMap<K, V, S> {
    const SHARED: bool = K::SHARED || V::SHARED;
    const DROPS_ANYWHERE: bool =
        drops_anywhere::<K>() && drops_anywhere::<V>() && !std::mem::needs_drop::<S>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
            + hash_table_bytes(self.capacity(), size_of::<(K, V)>())
            + items_heap(self.keys())
            + items_heap(self.values())
    }
}

/// As `HashMap`.
impl<T: ReclaimSize, S> ReclaimSize for HashSet<T, S> {
    const SHARED: bool = T::SHARED;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>() && !std::mem::needs_drop::<S>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
            + hash_table_bytes(self.capacity(), size_of::<T>())
            + items_heap(self.iter())
    }
}

/// An approximation: each entry inline (nodes hold up to 11, about
/// two-thirds full) and each entry's own heap.
impl<K: ReclaimSize, V: ReclaimSize> ReclaimSize for BTreeMap<K, V> {
    const SHARED: bool = K::SHARED || V::SHARED;
    const DROPS_ANYWHERE: bool = drops_anywhere::<K>() && drops_anywhere::<V>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
            + self.len() * size_of::<(K, V)>() * 3 / 2
            + items_heap(self.keys())
            + items_heap(self.values())
    }
}

/// As `BTreeMap`.
impl<T: ReclaimSize> ReclaimSize for BTreeSet<T> {
    const SHARED: bool = T::SHARED;
    const DROPS_ANYWHERE: bool = drops_anywhere::<T>();
    fn reclaim_size(&self) -> usize {
        size_of::<Self>() + self.len() * size_of::<T>() * 3 / 2 + items_heap(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_count_their_elements_heap() {
        let v = vec![String::with_capacity(10), String::with_capacity(20)];
        let inner = 2 * size_of::<String>() + 30;
        assert_eq!(v.reclaim_size(), size_of::<Vec<String>>() + inner);
        let b: Box<[u16]> = vec![0; 8].into_boxed_slice();
        assert_eq!(b.reclaim_size(), size_of::<Box<[u16]>>() + 16);
        assert_eq!(Box::new(vec![0u8; 5]).heap_size(), size_of::<Vec<u8>>() + 5);
        // A `reclaim_size` that leaves out the value's own 64 bytes: wrong,
        // but its `heap_size` is 0, not an overflow.
        struct Wide(#[allow(dead_code)] [u8; 64]);
        impl ReclaimSize for Wide {
            fn reclaim_size(&self) -> usize {
                8
            }
        }
        assert_eq!(Wide([0; 64]).heap_size(), 0);
        let t = (1u8, String::from("abc"), Some(vec![0u32; 2]), [0u8; 3]);
        let want = std::mem::size_of_val(&t) + 3 + 8;
        assert_eq!(t.reclaim_size(), want);
        assert_eq!(None::<String>.reclaim_size(), size_of::<Option<String>>());
        let a = Arc::new(vec![0u8; 1000]);
        assert_eq!(a.reclaim_size(), size_of::<Arc<Vec<u8>>>());
        assert_eq!(Box::<str>::from("hello").reclaim_size(), 16 + 5);
        let mut d = VecDeque::with_capacity(4);
        d.push_back(String::from("xy"));
        assert!(d.reclaim_size() >= size_of::<VecDeque<String>>() + 4 * 24 + 2);
        let m: HashMap<u32, String> = [(1, "ab".to_string())].into();
        assert!(m.reclaim_size() > size_of::<HashMap<u32, String>>() + 2);
        let t: BTreeMap<u32, Vec<u8>> = [(1, vec![0; 100])].into();
        assert!(t.reclaim_size() >= 100 + size_of::<(u32, Vec<u8>)>());
    }

    // `PLAIN` is inferred through composites (checked at compile time).
    const _: () = {
        assert!(<[(u8, char); 4]>::PLAIN);
        assert!(<Option<Arc<String>>>::PLAIN);
        assert!(<&'static str>::PLAIN);
        assert!(!<Option<String>>::PLAIN);
        assert!(!<Box<u8>>::PLAIN);
        assert!(!<(u8, Vec<u8>)>::PLAIN);
    };

    #[test]
    fn shared_pointers_are_said_through_containers_and_the_macro() {
        struct Node {
            body: Vec<u8>,
            parent: Option<Arc<String>>,
        }
        crate::reclaim_size!(Node { body, parent });
        struct Leaf {
            body: Vec<u8>,
        }
        crate::reclaim_size!(Leaf { body }; drops_anywhere);
        const {
            assert!(<Arc<u8>>::SHARED && <Rc<[u8]>>::SHARED);
            assert!(<Vec<Option<Arc<u8>>>>::SHARED && <Box<Rc<u8>>>::SHARED);
            assert!(<(u8, String, Arc<u8>)>::SHARED && <HashMap<u8, Arc<u8>>>::SHARED);
            assert!(Node::SHARED && !Leaf::SHARED);
            assert!(!<(u8, String)>::SHARED && !<Vec<Box<[u8]>>>::SHARED && !<&str>::SHARED);
        }
        let n = Node {
            body: vec![0; 10],
            parent: None,
        };
        assert_eq!(n.reclaim_size(), size_of::<Node>() + 10);
        assert!(n.parent.is_none());
    }
}
