//! `#[derive(ReclaimSize)]`: every field counted (structs of each shape,
//! enums, generics), `skip`, `drops_anywhere`, `SHARED` and `PLAIN`, and
//! the derived sizes booked by the default calls of a cell, a map and a
//! cache.

use std::collections::HashMap;
use std::mem::size_of;
use std::sync::atomic::AtomicPtr;
use std::sync::Arc;

use rcu_reclaim::{drops_anywhere, Config, Rcu, RcuCache, RcuCell, RcuHashMap, ReclaimSize};

const KIB64: usize = 64 << 10;

fn on_demand() -> Rcu {
    Rcu::new(Config::new().on_demand()).unwrap()
}

#[derive(ReclaimSize)]
struct Page {
    title: String,
    body: Vec<u8>,
    links: HashMap<String, u32>,
    views: u64,
}

fn page() -> Page {
    let mut links = HashMap::new();
    links.insert(String::from("next"), 2);
    links.insert(String::from("prev"), 0);
    let mut body = Vec::with_capacity(KIB64);
    body.push(1);
    Page {
        title: String::from("home"),
        body,
        links,
        views: 0,
    }
}

#[test]
fn a_named_struct_counts_every_field() {
    let p = page();
    assert_eq!(p.views, 0);
    let want = size_of::<Page>() + p.title.heap_size() + p.body.heap_size() + p.links.heap_size();
    assert_eq!(p.reclaim_size(), want);
    assert_eq!(p.body.heap_size(), KIB64);
    assert!(p.links.heap_size() >= 2 * (size_of::<(String, u32)>() + 4));
    // The fields' own sizes are inside `size_of::<Page>()`, not added again.
    assert_eq!(p.heap_size(), want - size_of::<Page>());
    const {
        assert!(!Page::PLAIN && !Page::SHARED && !Page::DROPS_ANYWHERE);
    }
    // Without `drops_anywhere` it is not declared, though every field drops anywhere.
    assert!(!drops_anywhere::<Page>());
}

#[derive(ReclaimSize)]
struct Blob(Vec<u8>, u32, String);

#[derive(ReclaimSize)]
struct Marker;

#[derive(ReclaimSize)]
struct Empty {}

#[test]
fn tuple_and_unit_structs() {
    let b = Blob(vec![0; 100], 7, String::with_capacity(5));
    assert_eq!(b.1, 7);
    assert_eq!(b.reclaim_size(), size_of::<Blob>() + 100 + 5);
    assert_eq!(Marker.reclaim_size(), 0);
    assert_eq!(Empty {}.reclaim_size(), 0);
    const {
        assert!(Marker::PLAIN && Empty::PLAIN && !Blob::PLAIN);
        assert!(!Marker::SHARED);
    }
    // In containers, each element's heap too.
    let blobs = vec![
        Blob(vec![0; 10], 0, String::new()),
        Blob(vec![0; 20], 0, String::new()),
    ];
    assert_eq!(
        blobs.reclaim_size(),
        size_of::<Vec<Blob>>() + 2 * size_of::<Blob>() + 30
    );
}

#[derive(ReclaimSize)]
enum Value {
    Nothing,
    Small(u64),
    Big(Vec<u8>),
    Text { body: String, lang: [u8; 2] },
    Pair(String, Box<Value>),
}

#[derive(ReclaimSize)]
enum Never {}

#[test]
fn an_enum_counts_the_fields_of_its_variant() {
    let s = size_of::<Value>();
    assert_eq!(Value::Nothing.reclaim_size(), s);
    assert_eq!(Value::Small(3).reclaim_size(), s);
    assert_eq!(Value::Big(vec![0; KIB64]).reclaim_size(), s + KIB64);
    let text = Value::Text {
        body: String::from("hello"),
        lang: *b"en",
    };
    assert_eq!(text.reclaim_size(), s + 5);
    // A recursive one: the box's pointee and its heap.
    let pair = Value::Pair(String::from("ab"), Box::new(Value::Big(vec![0; 10])));
    assert_eq!(pair.reclaim_size(), s + 2 + (s + 10));
    const {
        assert!(!Value::PLAIN && !Value::SHARED && !Value::DROPS_ANYWHERE);
        assert!(Never::PLAIN && !Never::SHARED);
    }
    if let Value::Text { lang, .. } = text {
        assert_eq!(&lang, b"en");
    }
}

#[derive(ReclaimSize)]
#[reclaim_size(drops_anywhere)]
enum Route {
    Direct { prefix: String },
    Via(String, Vec<u32>),
}

#[test]
fn a_plain_enum_is_plain() {
    #[derive(ReclaimSize, Clone, Copy)]
    enum Protocol {
        Tcp,
        Udp(u16),
    }
    const {
        assert!(Protocol::PLAIN);
    }
    assert_eq!(Protocol::Udp(53).reclaim_size(), size_of::<Protocol>());
    assert_eq!(
        vec![Protocol::Tcp; 4].reclaim_size(),
        size_of::<Vec<Protocol>>() + 4 * size_of::<Protocol>()
    );
    assert!(drops_anywhere::<Route>());
    let r = Route::Via(String::from("gw"), vec![1, 2]);
    assert_eq!(r.reclaim_size(), size_of::<Route>() + 2 + 8);
    assert_eq!(
        Route::Direct {
            prefix: String::from("10/8")
        }
        .reclaim_size(),
        size_of::<Route>() + 4
    );
}

#[derive(ReclaimSize)]
struct Tagged<T> {
    tag: String,
    value: T,
}

#[derive(ReclaimSize)]
#[reclaim_size(drops_anywhere)]
struct Pair<'a, A, B: Clone, const N: usize>
where
    A: Default,
{
    a: Vec<A>,
    b: Option<B>,
    name: &'a str,
    fixed: [u8; N],
}

/// Generic over a type that has no `ReclaimSize`: a skipped field names
/// it, and gets no bound.
#[derive(ReclaimSize)]
struct Handle<H> {
    label: String,
    #[reclaim_size(skip)]
    handle: H,
}

struct NoSize;

#[test]
fn generic_types_bound_the_fields_that_name_a_parameter() {
    let t = Tagged {
        tag: String::from("v"),
        value: vec![0u8; 100],
    };
    assert_eq!(t.reclaim_size(), size_of::<Tagged<Vec<u8>>>() + 1 + 100);
    assert_eq!(
        Tagged {
            tag: String::new(),
            value: 1u8
        }
        .reclaim_size(),
        size_of::<Tagged<u8>>()
    );
    const {
        assert!(!<Tagged<u8>>::PLAIN && !<Tagged<u8>>::SHARED);
        assert!(<Tagged<Arc<u8>>>::SHARED);
    }
    let p: Pair<'_, String, Vec<u8>, 3> = Pair {
        a: vec![String::from("xyz")],
        b: Some(vec![0; 9]),
        name: "static",
        fixed: [0; 3],
    };
    assert_eq!(p.name, "static");
    assert_eq!(p.fixed, [0; 3]);
    let want = size_of::<Pair<'_, String, Vec<u8>, 3>>() + (size_of::<String>() + 3) + 9;
    assert_eq!(p.reclaim_size(), want);
    assert!(drops_anywhere::<Pair<'static, String, Vec<u8>, 3>>());
    let h = Handle {
        label: String::from("fd"),
        handle: NoSize,
    };
    let NoSize = h.handle;
    assert_eq!(
        Handle {
            label: String::from("fd"),
            handle: NoSize
        }
        .reclaim_size(),
        size_of::<Handle<NoSize>>() + 2
    );
}

/// A link that owns nothing, skipped: counted by its inline bytes.
#[derive(ReclaimSize)]
#[reclaim_size(drops_anywhere)]
struct Node {
    value: String,
    #[reclaim_size(skip)]
    next: AtomicPtr<Node>,
}

/// A skipped field that owns heap: the derive cannot see it (by design:
/// the user said so), so only its inline bytes are counted.
#[derive(ReclaimSize)]
struct Counted {
    #[reclaim_size(skip)]
    elsewhere: Vec<u8>,
    id: u64,
}

#[test]
fn a_skipped_field_counts_its_inline_bytes_only() {
    let n = Node {
        value: String::from("abc"),
        next: AtomicPtr::default(),
    };
    assert!(n.next.into_inner().is_null());
    let n = Node {
        value: String::from("abc"),
        next: AtomicPtr::default(),
    };
    assert_eq!(n.reclaim_size(), size_of::<Node>() + 3);
    let c = Counted {
        elsewhere: vec![0; 1000],
        id: 1,
    };
    assert_eq!(c.elsewhere.len() as u64 + c.id, 1001);
    assert_eq!(c.reclaim_size(), size_of::<Counted>());
    const {
        // A skipped field may own heap: never PLAIN.
        assert!(!Counted::PLAIN);
        // Its `drops_anywhere` is the user's word.
        assert!(Node::DROPS_ANYWHERE);
        assert!(!Counted::DROPS_ANYWHERE);
    }
}

/// Drops anywhere but for one field, whose destructor takes a lock.
struct Locky(Vec<u8>);
impl Drop for Locky {
    fn drop(&mut self) {
        eprintln!("{} bytes", self.0.len()); // stderr's lock
    }
}
rcu_reclaim::reclaim_size!(Locky { 0 });

#[derive(ReclaimSize)]
#[reclaim_size(drops_anywhere)]
struct HoldsLocky {
    name: String,
    inner: Locky,
}

#[derive(ReclaimSize)]
#[reclaim_size(drops_anywhere)]
struct SharesString {
    name: String,
    owner: Arc<String>, // the last owner's drop runs the String's: not anywhere
}

#[derive(ReclaimSize)]
#[reclaim_size(drops_anywhere)]
struct SharesBytes {
    owner: Option<Arc<[u8]>>,
}

#[test]
fn drops_anywhere_needs_the_attribute_and_every_field() {
    assert!(drops_anywhere::<Node>());
    assert!(!drops_anywhere::<HoldsLocky>());
    assert!(!drops_anywhere::<SharesString>());
    assert!(drops_anywhere::<SharesBytes>());
    let h = HoldsLocky {
        name: String::from("x"),
        inner: Locky(vec![0; 4]),
    };
    assert_eq!(h.reclaim_size(), size_of::<HoldsLocky>() + 1 + 4);
}

#[test]
fn shared_when_a_field_holds_an_arc() {
    #[derive(ReclaimSize)]
    struct Snapshot {
        version: u64,
        data: Arc<Vec<u8>>,
    }
    #[derive(ReclaimSize)]
    enum Either {
        Owned(Vec<u8>),
        Shared(Option<Arc<str>>),
    }
    #[derive(ReclaimSize)]
    struct SkipsTheArc {
        body: Vec<u8>,
        #[reclaim_size(skip)]
        parent: Arc<Vec<u8>>,
    }
    const {
        assert!(Snapshot::SHARED && Either::SHARED && SharesString::SHARED);
        // A skipped field is out of SHARED as of everything else.
        assert!(!SkipsTheArc::SHARED);
        // An Arc is plain (a pointer), so is a struct of plain fields.
        assert!(Snapshot::PLAIN && !Either::PLAIN);
    }
    let s = Snapshot {
        version: 1,
        data: Arc::new(vec![0; KIB64]),
    };
    assert_eq!(s.version, 1);
    // The pointer only.
    assert_eq!(s.reclaim_size(), size_of::<Snapshot>());
    assert_eq!(
        Either::Owned(vec![0; 3]).reclaim_size(),
        size_of::<Either>() + 3
    );
    assert_eq!(Either::Shared(None).reclaim_size(), size_of::<Either>());
    let k = SkipsTheArc {
        body: vec![0; 8],
        parent: Arc::new(vec![]),
    };
    assert!(k.parent.is_empty());
    assert_eq!(k.reclaim_size(), size_of::<SkipsTheArc>() + 8);
}

#[test]
fn a_cell_books_the_derived_size() {
    let rcu = on_demand();
    let cell = RcuCell::new_in(&rcu, Some(Box::new(page())));
    let old_size = page().reclaim_size();
    cell.store(Box::new(page()));
    assert_eq!(rcu.pending_bytes(), old_size);
    let cell = RcuCell::new_in(&rcu, Some(Box::new(Value::Big(vec![0; KIB64]))));
    cell.store(Box::new(Value::Nothing));
    assert_eq!(rcu.pending_bytes(), old_size + size_of::<Value>() + KIB64);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn a_map_books_the_derived_size() {
    let rcu = on_demand();
    let map: RcuHashMap<u64, Page> = RcuHashMap::new_in(&rcu);
    map.insert(1, page());
    let size = page().reclaim_size();
    assert!(map.remove(&1));
    let booked = rcu.pending_bytes();
    assert!(booked >= size, "{booked} < {size}");
    assert!(booked <= size + 128, "{booked}");
    // Replacing books the old value too.
    map.insert(2, page());
    map.insert(2, page());
    assert!(rcu.pending_bytes() >= booked + size);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn a_cache_weighs_by_the_derived_size() {
    let rcu = on_demand();
    let cache: RcuCache<u32, Page> = RcuCache::builder().rcu(&rcu).max_bytes(1 << 20).build();
    let heap = page().heap_size();
    cache.insert(1, page());
    assert_eq!(cache.bytes(), RcuCache::<u32, Page>::ENTRY_OVERHEAD + heap);
    // A value of 64 KiB each: the cap holds about 15 of them.
    for key in 2..40 {
        cache.insert(key, page());
    }
    assert!(cache.bytes() <= 1 << 20);
    assert!(cache.len() < 20, "{}", cache.len());
    drop(cache);
    rcu.barrier();
}

/// A type that holds itself (through a `Box`, a `Vec`, an `Arc`): every
/// level is counted; the recursive fields stay out of the constants, which
/// would otherwise be defined by themselves.
#[derive(ReclaimSize)]
#[reclaim_size(drops_anywhere)]
enum Tree<T> {
    Leaf(T),
    Node(Vec<Tree<T>>, Option<Box<Self>>),
}

#[derive(ReclaimSize)]
struct Chain {
    name: String,
    parent: Option<std::rc::Rc<Chain>>,
}

#[test]
fn a_recursive_type_counts_every_level() {
    let s = size_of::<Tree<String>>();
    let leaf = || Tree::Leaf(String::from("ab"));
    let tree = Tree::Node(vec![leaf(), leaf()], Some(Box::new(leaf())));
    let children = 2 * s + 2 * 2;
    let boxed = s + 2;
    assert_eq!(tree.reclaim_size(), s + children + boxed);
    const {
        assert!(!<Tree<u8>>::PLAIN && !<Tree<u8>>::SHARED);
        // The attribute's word for the recursive fields, checked for `T`.
        assert!(<Tree<String>>::DROPS_ANYWHERE);
        assert!(!<Tree<Locky>>::DROPS_ANYWHERE);
        // An `Rc` of itself: shared.
        assert!(Chain::SHARED && !Chain::PLAIN);
    }
    let root = std::rc::Rc::new(Chain {
        name: String::from("root"),
        parent: None,
    });
    let child = Chain {
        name: String::from("c"),
        parent: Some(root),
    };
    assert_eq!(child.reclaim_size(), size_of::<Chain>() + 1);
}

/// `#[reclaim_size(crate = "..")]`: the crate under another name.
mod renamed {
    use rcu_reclaim as rr;

    #[derive(rr::ReclaimSize)]
    #[reclaim_size(crate = "rr", drops_anywhere)]
    pub struct Entry {
        pub key: String,
    }
}

#[test]
fn the_crate_under_another_name() {
    let e = renamed::Entry {
        key: String::from("abc"),
    };
    assert_eq!(e.key.len(), 3);
    assert_eq!(e.reclaim_size(), size_of::<renamed::Entry>() + 3);
    assert!(drops_anywhere::<renamed::Entry>());
}

/// A crate whose scope shadows the primitive types' names (a type called
/// `usize` or `bool` of its own, as a bindings generator may emit): the
/// derive and `reclaim_size!` name the primitives by their full paths.
/// They wrote `usize` and `bool` as is, which resolved to the shadowing
/// types: "method `reclaim_size` has an incompatible type for trait",
/// "implemented const `PLAIN` has an incompatible type for trait".
mod shadowed_primitives {
    #![allow(non_camel_case_types, dead_code)]

    pub struct usize;
    pub struct bool;

    #[derive(rcu_reclaim::ReclaimSize)]
    #[reclaim_size(drops_anywhere)]
    pub struct Derived {
        pub name: String,
    }

    #[derive(rcu_reclaim::ReclaimSize)]
    pub enum Variants {
        Name(String),
        Nothing,
    }

    #[derive(rcu_reclaim::ReclaimSize)]
    pub enum Never {}

    pub struct Named {
        pub name: String,
    }
    rcu_reclaim::reclaim_size!(Named { name });

    pub struct NamedAnywhere {
        pub name: String,
    }
    rcu_reclaim::reclaim_size!(NamedAnywhere { name }; drops_anywhere);

    pub struct NoHeap(pub u32);
    rcu_reclaim::reclaim_size!(NoHeap);

    pub struct Generic<T> {
        pub value: T,
    }
    rcu_reclaim::reclaim_size!(impl[T: rcu_reclaim::ReclaimSize] Generic<T> { value });
}

#[test]
fn the_derive_and_the_macro_name_the_primitives_in_full() {
    use shadowed_primitives::*;
    let abc = || String::from("abc");
    assert_eq!(
        Derived { name: abc() }.reclaim_size(),
        size_of::<Derived>() + 3
    );
    assert!(drops_anywhere::<Derived>());
    assert_eq!(
        Variants::Name(abc()).reclaim_size(),
        size_of::<Variants>() + 3
    );
    assert_eq!(Variants::Nothing.reclaim_size(), size_of::<Variants>());
    assert_eq!(Named { name: abc() }.reclaim_size(), size_of::<Named>() + 3);
    assert!(drops_anywhere::<NamedAnywhere>());
    assert_eq!(NoHeap(1).reclaim_size(), size_of::<NoHeap>());
    assert_eq!(
        Generic { value: abc() }.reclaim_size(),
        size_of::<Generic<String>>() + 3
    );
    let _: fn(&Never) -> std::primitive::usize = ReclaimSize::reclaim_size;
}

/// `#[repr(packed)]`: the derive borrowed each field (`&self.field`),
/// which rustc refuses for a packed field (E0793, "reference to field of
/// packed struct is unaligned", pointing at the derive), so a packed wire
/// header could not derive `ReclaimSize` at all. Each field is now copied
/// out; a field that is not `Copy` is skipped (or is an error naming
/// `skip`: `a_packed_field_that_is_not_copy_is_an_error_naming_skip`).
#[derive(ReclaimSize, Clone, Copy)]
#[repr(C, packed)]
struct WireHeader {
    kind: u8,
    len: u32,
    src: [u16; 3],
    seq: Option<u64>,
}

#[derive(ReclaimSize)]
#[reclaim_size(drops_anywhere)]
#[repr(Rust, packed(2))]
struct PackedNamed {
    id: u64,
    #[reclaim_size(skip)]
    name: String,
}

#[derive(ReclaimSize)]
#[repr(Rust, packed)]
struct PackedTuple<T>(u8, T, &'static str);

#[test]
fn a_packed_struct_derives_by_copying_its_fields() {
    let h = WireHeader {
        kind: 1,
        len: 64,
        src: [10, 0, 1],
        seq: Some(7),
    };
    assert_eq!(h.reclaim_size(), size_of::<WireHeader>());
    assert_eq!({ h.kind } as u32 + { h.len } + { h.src }[2] as u32, 66);
    assert_eq!({ h.seq }, Some(7));
    let n = PackedNamed {
        id: 3,
        name: String::from("abc"),
    };
    assert_eq!({ n.id }, 3);
    assert_eq!(n.reclaim_size(), size_of::<PackedNamed>());
    let PackedNamed { name, .. } = n; // moved out: no reference to it
    assert_eq!(name, "abc");
    let t = PackedTuple(1, 2.5f64, "x");
    assert_eq!(({ t.0 }, { t.1 }, { t.2 }), (1, 2.5, "x"));
    assert_eq!(t.reclaim_size(), size_of::<PackedTuple<f64>>());
    const {
        assert!(WireHeader::PLAIN && !WireHeader::SHARED);
        assert!(!PackedNamed::PLAIN && PackedNamed::DROPS_ANYWHERE);
        assert!(<PackedTuple<u32>>::PLAIN);
    }
    // Retired and booked as any derived value.
    let rcu = on_demand();
    let cell = RcuCell::new_in(&rcu, Box::new(h));
    cell.store(Box::new(h));
    assert_eq!(rcu.pending_bytes(), size_of::<WireHeader>());
    rcu.barrier();
}

/// A tree's parent link, `Weak<Self>`: recursive, so out of the
/// constants, and taken as `SHARED` by its name as `Arc` and `Rc` are (a
/// `Weak` field that is not recursive says `SHARED` itself): the derive
/// looked for `Arc` and `Rc` only, and such a type was not `SHARED`, so a
/// cache weighed by `ReclaimSize` took it.
#[derive(ReclaimSize)]
struct TreeNode {
    name: String,
    parent: Option<std::sync::Weak<TreeNode>>,
}

#[test]
fn a_weak_parent_link_is_shared() {
    let root = Arc::new(TreeNode {
        name: String::from("root"),
        parent: None,
    });
    let child = TreeNode {
        name: String::from("c"),
        parent: Some(Arc::downgrade(&root)),
    };
    assert_eq!(child.reclaim_size(), size_of::<TreeNode>() + 1);
    assert!(child.parent.as_ref().unwrap().upgrade().unwrap().name == "root");
    const {
        assert!(TreeNode::SHARED && !TreeNode::PLAIN);
    }
}

/// What rustc says of `src` (a library crate that uses `rcu_reclaim`),
/// compiled against an rcu-reclaim beside this test's binary: the newest
/// `librcu_reclaim-*.rlib` there that rustc can load with the derive
/// (the deps directory may also hold one built by another toolchain, or
/// without the `derive` feature for the drop-in crates). `None` where
/// none loads (sanitizer flags that rustc is not given here): the
/// diagnostics under test are then not reached.
fn rustc_says(name: &str, src: &str) -> Option<String> {
    use std::process::Command;
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("<target>/<profile>/deps");
    let mut rlibs: Vec<(std::time::SystemTime, std::path::PathBuf)> = std::fs::read_dir(deps)
        .expect("the deps directory")
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("librcu_reclaim-") && n.ends_with(".rlib")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    rlibs.sort();
    let dir = std::env::temp_dir().join(format!(
        "rcu-reclaim-diagnostics-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lib.rs");
    std::fs::write(&file, src).unwrap();
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut unloaded = String::new();
    for (_, rlib) in rlibs.iter().rev() {
        let out = Command::new(&rustc)
            .args([
                "--edition",
                "2021",
                "--crate-type",
                "lib",
                "--emit",
                "metadata",
            ])
            .args(["--color", "never", "--crate-name", "diagnostics"])
            .arg("-L")
            .arg(format!("dependency={}", deps.display()))
            .arg("--extern")
            .arg(format!("rcu_reclaim={}", rlib.display()))
            .arg("--out-dir")
            .arg(&dir)
            .arg(&file)
            .output()
            .expect("rustc runs");
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        // Another rustc's, one whose dependencies are gone, another
        // sanitizer's, one without the derive.
        let not_loaded = [
            "E0460",
            "E0461",
            "E0462",
            "E0463",
            "E0464",
            "E0514",
            "mixing `-Z",
            "cannot find derive macro",
            "could not find `ReclaimSize`",
        ];
        if not_loaded.iter().any(|e| said.contains(e)) {
            unloaded += &format!("{}:\n{said}\n", rlib.display());
            continue;
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!out.status.success(), "{name} compiled: {said}");
        return Some(said);
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{name}: no rcu-reclaim loads here, not checked:\n{unloaded}");
    None
}

/// A field of another crate's type without `ReclaimSize` (std's `File`
/// here): the error said to derive the trait for it or name its fields
/// with `reclaim_size!`, neither of which another crate's type takes (the
/// orphan rule), and its notes told to implement it by hand, which the
/// orphan rule refuses too. The message (all rustc shows where it
/// suggests borrowing instead) now names the newtype and `skip`, and a
/// note shows the newtype.
#[test]
#[cfg_attr(miri, ignore = "runs rustc")]
fn the_missing_impl_error_says_what_to_do_with_another_crates_type() {
    let Some(said) = rustc_says(
        "foreign",
        "#[derive(rcu_reclaim::ReclaimSize)]\n\
         pub struct Log { pub name: String, pub file: std::fs::File }\n\
         pub fn retire(rcu: &rcu_reclaim::Rcu, file: std::fs::File) {\n\
             rcu.defer_drop(Box::new(file));\n\
         }\n",
    ) else {
        return;
    };
    let messages: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("error[E0277]: `File` does not implement `ReclaimSize`"))
        .collect();
    assert_eq!(messages.len(), 2, "the field and the retire: {said}");
    for m in messages {
        assert!(
            m.contains("another crate's type")
                && m.contains("newtype of yours")
                && m.contains("#[reclaim_size(skip)]"),
            "{m}"
        );
    }
    assert!(
        said.contains("struct Wrapper(other_crate::Type);") && said.contains("the orphan rule"),
        "{said}"
    );
}

/// A field of a packed struct that is not `Copy` (the derive copies
/// fields out: see `a_packed_struct_derives_by_copying_its_fields`): an
/// error at the field's type that says why and names `skip`, not rustc's
/// E0793 at the derive.
#[test]
#[cfg_attr(miri, ignore = "runs rustc")]
fn a_packed_field_that_is_not_copy_is_an_error_naming_skip() {
    let Some(said) = rustc_says(
        "packed",
        "#[derive(rcu_reclaim::ReclaimSize)]\n\
         #[repr(C, packed)]\n\
         pub struct Header { pub kind: u8, pub name: String }\n",
    ) else {
        return;
    };
    assert!(
        said.contains("error[E0277]: `#[derive(ReclaimSize)]` cannot read a field of type `String` in a `#[repr(packed)]` struct")
            && said.contains("mark the field `#[reclaim_size(skip)]`")
            && said.contains("pub name: String")
            && !said.contains("E0793"),
        "{said}"
    );
}
