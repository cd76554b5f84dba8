//! `#[derive(ReclaimSize)]` for rcu-reclaim.
//!
//! rcu-reclaim books the bytes each retired value frees through its trait
//! `ReclaimSize`: the value's own size plus the heap memory it owns. This
//! crate derives that trait for a struct or an enum, counting **every**
//! field, so that a field added later is counted without anyone listing
//! it. Use it through rcu-reclaim, which re-exports it beside the trait as
//! `rcu_reclaim::ReclaimSize` (its `derive` feature, on by default); the
//! examples and the full rules are on that re-export.
//!
//! What the derive writes, for a type `T`:
//!
//! * `reclaim_size`: `size_of::<T>()` plus the `heap_size` of every field
//!   (of the variant the value is, for an enum), except the fields marked
//!   `#[reclaim_size(skip)]`, which count only their inline bytes (already
//!   in `size_of::<T>()`).
//! * `SHARED`: whether any field not skipped says `SHARED` (may hold an
//!   `Arc` or `Rc`).
//! * `PLAIN`: whether every field says `PLAIN` (owns no heap), and no
//!   field is skipped (a skipped field may own heap the derive cannot see).
//! * `DROPS_ANYWHERE`: only with `#[reclaim_size(drops_anywhere)]` on the
//!   type (your word that its own `Drop`, if any, takes no lock and waits
//!   for no grace period), and then only if every field not skipped drops
//!   anywhere too (a skipped field is your word).
//! * For a generic type, a `FieldType: ReclaimSize` bound for each field
//!   (not skipped) whose type names a type parameter; the type's own
//!   bounds are kept.
//! * For a `#[repr(packed)]` struct (`packed(N)` too), whose fields may be
//!   unaligned and cannot be borrowed (E0793), each field not skipped is
//!   copied out to be sized, so its type must be `Copy` (a `FieldType:
//!   Copy` bound as well, for a field that names a type parameter); a
//!   field that is not is an error at its type that names
//!   `#[reclaim_size(skip)]`.
//!
//! A field whose type names the type itself (`Box<Self>`, `Vec<Tree<T>>`:
//! a recursive type) is counted, but stays out of the constants, which
//! would otherwise be defined by themselves (a cycle rustc rejects): the
//! type is then not `PLAIN`, is `SHARED` only if such a field names `Arc`,
//! `Rc` or `Weak` (or another field is), and such a field's
//! `DROPS_ANYWHERE` is your word, as a skipped field's is. It gets no bound either (the impl
//! being derived is its bound).
//!
//! The attributes: on the type, `#[reclaim_size(drops_anywhere)]` and
//! `#[reclaim_size(crate = "path")]` (where rcu-reclaim is not
//! `::rcu_reclaim`, e.g. renamed in `Cargo.toml`); on a field,
//! `#[reclaim_size(skip)]`. A union does not derive it (which field is
//! live is not known): implement `ReclaimSize` by hand. Nor does a field
//! of type `ManuallyDrop` or `MaybeUninit` not marked `skip` (the value's
//! drop does not drop it): skip it when its contents leave before the
//! value is retired (a lock-free node's element), else implement the
//! trait by hand.

#![warn(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::{TokenStream as TokenStream2, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{
    parse_macro_input, Attribute, Data, DeriveInput, Error, Fields, Ident, Index, LitStr, Path,
    Result, Type, WherePredicate,
};

/// (From the `rcu-reclaim-derive` crate, whose documentation lists what
/// the derive writes for each field, constant and bound.)
#[proc_macro_derive(ReclaimSize, attributes(reclaim_size))]
pub fn derive_reclaim_size(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

const CONTAINER_FORMS: &str =
    "`#[reclaim_size(drops_anywhere)]` or `#[reclaim_size(crate = \"path\")]`";
const FIELD_FORMS: &str = "`#[reclaim_size(skip)]`";

/// What the attributes on the type say.
struct ContainerAttrs {
    drops_anywhere: bool,
    krate: Path,
}

/// One field: its type, and whether it is skipped.
struct Field<'a> {
    ty: &'a Type,
    skip: bool,
}

fn expand(input: &DeriveInput) -> Result<TokenStream2> {
    let attrs = container_attrs(&input.attrs)?;
    let krate = &attrs.krate;
    let trait_path = quote!(#krate::ReclaimSize);
    let name = &input.ident;
    // A field whose type names the type itself (`Box<Self>`, `Vec<Tree<T>>`)
    // is counted, but stays out of the constants and the bounds: its
    // `SHARED` or `DROPS_ANYWHERE` would be computed from the one being
    // defined (a cycle rustc rejects), and its bound from the impl itself.
    let own = [name.clone(), Ident::new("Self", name.span())];
    let own: Vec<&Ident> = own.iter().collect();
    let is_recursive = |ty: &Type| names_any(ty.to_token_stream(), &own);
    // A field's heap: through `__derive_field` (as the constants read it),
    // so that a field type without the trait is one error, at the field.
    let heap_term = |ty: &Type, place: TokenStream2| {
        if is_recursive(ty) {
            quote_spanned!(ty.span()=> #trait_path::heap_size(#place))
        } else {
            quote_spanned!(ty.span()=> (#krate::__derive_field::<#ty>().heap_size)(#place))
        }
    };
    // A `#[repr(packed)]` struct's fields may be unaligned: a reference to
    // one is refused (E0793), so each is copied out (`&{ self.field }`),
    // after `__derive_packed_field` checks, at the field's type, that it
    // is `Copy` (its error names `skip`; the move out would otherwise be
    // E0507, naming neither the packing nor the fix).
    let packed = is_packed(&input.attrs);

    // Every field of the type (of every variant), and the body of
    // `reclaim_size` beyond `size_of::<Self>()`.
    let mut fields: Vec<Field> = Vec::new();
    let heap = match &input.data {
        Data::Struct(data) => {
            let mut terms = Vec::new();
            for (i, field) in data.fields.iter().enumerate() {
                let skip = field_skipped(&field.attrs)?;
                fields.push(Field {
                    ty: &field.ty,
                    skip,
                });
                if skip {
                    continue;
                }
                dropped_with_the_value(&field.ty)?;
                let member = match &field.ident {
                    Some(ident) => quote!(#ident),
                    None => Index::from(i).into_token_stream(),
                };
                let ty = &field.ty;
                if packed {
                    let term = heap_term(ty, quote!(&{ self.#member }));
                    terms.push(quote_spanned!(ty.span()=> {
                        #krate::__derive_packed_field::<#ty>();
                        #term
                    }));
                } else {
                    terms.push(heap_term(ty, quote!(&self.#member)));
                }
            }
            quote!(#(+ #terms)*)
        }
        Data::Enum(data) => {
            let mut arms = TokenStream2::new();
            for variant in &data.variants {
                no_variant_attrs(&variant.attrs)?;
                let name = &variant.ident;
                let mut terms = Vec::new();
                let mut bindings = Vec::new();
                for (i, field) in variant.fields.iter().enumerate() {
                    let skip = field_skipped(&field.attrs)?;
                    fields.push(Field {
                        ty: &field.ty,
                        skip,
                    });
                    let binding = format_ident!("__reclaim_size_field{}", i);
                    let member = match &field.ident {
                        Some(ident) => quote!(#ident),
                        None => Index::from(i).into_token_stream(),
                    };
                    if skip {
                        continue;
                    }
                    dropped_with_the_value(&field.ty)?;
                    let ty = &field.ty;
                    terms.push(heap_term(ty, quote!(#binding)));
                    bindings.push(quote!(#member: ref #binding));
                }
                let pattern = match &variant.fields {
                    Fields::Unit => quote!(Self::#name),
                    _ => quote!(Self::#name { #(#bindings,)* .. }),
                };
                let heap = if terms.is_empty() {
                    quote!(0)
                } else {
                    quote!(#(#terms)+*)
                };
                arms.extend(quote!(#pattern => #heap,));
            }
            // `*self` and `ref` bindings: an enum without variants matches
            // nothing, where `match self` would need an arm for the reference.
            if data.variants.is_empty() {
                // No value: `match *self {}` alone (added to a `usize`, its
                // type would fall back to `()`).
                return Ok(empty_enum(input, &trait_path));
            }
            quote!(+ match *self { #arms })
        }
        Data::Union(data) => {
            return Err(Error::new(
                data.union_token.span(),
                "`#[derive(ReclaimSize)]` does not support unions: which field is live is not \
                 known. Implement `ReclaimSize` by hand (`fn reclaim_size(&self) -> usize`: \
                 `size_of::<Self>()` plus the heap the live field owns)",
            ));
        }
    };

    let kept: Vec<&Type> = fields.iter().filter(|f| !f.skip).map(|f| f.ty).collect();
    let (recursive, kept): (Vec<&Type>, Vec<&Type>) =
        kept.into_iter().partition(|ty| is_recursive(ty));
    let any_skipped = fields.iter().any(|f| f.skip);

    // `FieldType: ReclaimSize` for each field type that names a type
    // parameter (a concrete field type needs no bound: its impl is checked
    // where it is used, and a bound on it would only move the error).
    let params: Vec<&Ident> = input.generics.type_params().map(|p| &p.ident).collect();
    let mut generics = input.generics.clone();
    if !params.is_empty() {
        let where_clause = generics.make_where_clause();
        let mut bounded: Vec<String> = Vec::new();
        for ty in &kept {
            if !names_any(ty.to_token_stream(), &params) {
                continue;
            }
            let key = ty.to_token_stream().to_string();
            if bounded.contains(&key) {
                continue;
            }
            bounded.push(key);
            let predicate: WherePredicate = syn::parse_quote!(#ty: #trait_path);
            where_clause.predicates.push(predicate);
            if packed {
                // Copied out to be sized (see `packed` above).
                let predicate: WherePredicate = syn::parse_quote!(#ty: ::core::marker::Copy);
                where_clause.predicates.push(predicate);
            }
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    // A recursive field is taken as shared when it names `Arc`, `Rc` or
    // `Weak` (the std's shared pointers and their weak links, such as a
    // tree's parent link: `SHARED`, as such a field that is not recursive
    // says); through a `Box`, `Vec` or `Option` it adds nothing the other
    // fields do not say.
    let arc_rc = [
        Ident::new("Arc", name.span()),
        Ident::new("Rc", name.span()),
        Ident::new("Weak", name.span()),
    ];
    let arc_rc: Vec<&Ident> = arc_rc.iter().collect();
    let recursive_shared = recursive
        .iter()
        .any(|ty| names_any(ty.to_token_stream(), &arc_rc));
    let shared = if recursive_shared {
        quote!(true)
    } else if kept.is_empty() {
        quote!(false)
    } else {
        let each = kept
            .iter()
            .map(|ty| quote_spanned!(ty.span()=> #krate::__derive_field::<#ty>().shared));
        quote!(#(#each)||*)
    };
    // Not plain if a field is skipped (it may own heap the derive cannot
    // see) or recursive (a type that holds itself does so through a pointer).
    let plain = if any_skipped || !recursive.is_empty() {
        quote!(false)
    } else {
        let each = kept
            .iter()
            .map(|ty| quote_spanned!(ty.span()=> && #krate::__derive_field::<#ty>().plain));
        quote!(true #(#each)*)
    };
    let drops_anywhere = if attrs.drops_anywhere {
        let each = kept.iter().map(
            |ty| quote_spanned!(ty.span()=> && #krate::__derive_field::<#ty>().drops_anywhere),
        );
        quote! {
            const DROPS_ANYWHERE: ::core::primitive::bool = true #(#each)*;
        }
    } else {
        TokenStream2::new()
    };

    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #trait_path for #name #ty_generics #where_clause {
            const PLAIN: ::core::primitive::bool = #plain;
            const SHARED: ::core::primitive::bool = #shared;
            #drops_anywhere
            #[inline]
            fn reclaim_size(&self) -> ::core::primitive::usize {
                ::core::mem::size_of::<Self>() #heap
            }
        }
    })
}

/// The impl for an enum without variants, which has no value to size.
fn empty_enum(input: &DeriveInput, trait_path: &TokenStream2) -> TokenStream2 {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics #trait_path for #name #ty_generics #where_clause {
            const PLAIN: ::core::primitive::bool = true;
            const DROPS_ANYWHERE: ::core::primitive::bool = true;
            fn reclaim_size(&self) -> ::core::primitive::usize {
                match *self {}
            }
        }
    }
}

/// An error, spanned at the field's type, for a field the value's drop
/// does not drop: a `ManuallyDrop` or `MaybeUninit` (by the last segment of
/// its path). Neither has `ReclaimSize`, since what retiring one frees
/// depends on code the derive cannot see; left to the trait bound, a
/// generic type's error came only at the retire, where rustc hides the
/// notes that name `skip` (crossbeam-epoch's Treiber node is such a type).
fn dropped_with_the_value(ty: &Type) -> Result<()> {
    let Type::Path(path) = ty else {
        return Ok(());
    };
    let Some(last) = path.path.segments.last() else {
        return Ok(());
    };
    let wrapper = last.ident.to_string();
    if wrapper != "ManuallyDrop" && wrapper != "MaybeUninit" {
        return Ok(());
    }
    Err(Error::new(
        ty.span(),
        format!(
            "a `{wrapper}` field is not dropped with the value, so `#[derive(ReclaimSize)]` \
             cannot tell what retiring it frees: mark the field `#[reclaim_size(skip)]` when its \
             contents are moved out or dropped before the value is retired (a lock-free \
             node's element: only the inline bytes are counted), or, when a `Drop` of yours \
             drops them, implement `ReclaimSize` by hand (`size_of::<Self>()` plus the \
             contents' `heap_size()`)"
        ),
    ))
}

/// Whether the type is `#[repr(packed)]` or `#[repr(packed(N))]` (beside
/// other representations: `#[repr(C, packed)]`).
fn is_packed(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("repr"))
        .any(|a| match &a.meta {
            syn::Meta::List(list) => list
                .tokens
                .clone()
                .into_iter()
                .any(|t| matches!(t, TokenTree::Ident(ident) if ident == "packed")),
            _ => false,
        })
}

/// Whether `tokens` (a type) names any of `params`.
fn names_any(tokens: TokenStream2, params: &[&Ident]) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => params.iter().any(|p| **p == ident),
        TokenTree::Group(group) => names_any(group.stream(), params),
        _ => false,
    })
}

/// The `#[reclaim_size(..)]` attributes of the type.
fn container_attrs(attrs: &[Attribute]) -> Result<ContainerAttrs> {
    let mut out = ContainerAttrs {
        drops_anywhere: false,
        krate: syn::parse_quote!(::rcu_reclaim),
    };
    let mut krate_seen = false;
    for attr in attrs.iter().filter(|a| a.path().is_ident("reclaim_size")) {
        list_of(attr, CONTAINER_FORMS, "on the type")?;
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("drops_anywhere") {
                no_value(&meta, "`#[reclaim_size(drops_anywhere)]`")?;
                if out.drops_anywhere {
                    return Err(meta.error("`drops_anywhere` is given twice"));
                }
                out.drops_anywhere = true;
                Ok(())
            } else if meta.path.is_ident("crate") {
                if krate_seen {
                    return Err(meta.error("`crate` is given twice"));
                }
                krate_seen = true;
                let lit: LitStr = meta.value()?.parse()?;
                out.krate = lit.parse()?;
                Ok(())
            } else if meta.path.is_ident("skip") {
                Err(meta.error(format!(
                    "`skip` goes on a field, not on the type: `#[reclaim_size(skip)]` before \
                     the field to leave out; on the type, {CONTAINER_FORMS}"
                )))
            } else {
                Err(meta.error(format!(
                    "unknown `reclaim_size` attribute: on the type, {CONTAINER_FORMS}; on a \
                     field, {FIELD_FORMS}"
                )))
            }
        })?;
    }
    Ok(out)
}

/// An error for a `#[reclaim_size(..)]` on an enum's variant, which
/// says nothing there (it was ignored: a `skip` meant for the variant's
/// fields left them counted without a word).
fn no_variant_attrs(attrs: &[Attribute]) -> Result<()> {
    match attrs.iter().find(|a| a.path().is_ident("reclaim_size")) {
        None => Ok(()),
        Some(attr) => Err(Error::new_spanned(
            attr,
            format!(
                "`reclaim_size` does not go on a variant: to leave a variant's fields out, put \
                 {FIELD_FORMS} on each of them (`Variant(#[reclaim_size(skip)] Handle)`); on \
                 the type, {CONTAINER_FORMS}"
            ),
        )),
    }
}

/// An error for a value given to a flag that takes none
/// (`#[reclaim_size(skip = true)]`), which syn reports as "expected `,`".
fn no_value(meta: &syn::meta::ParseNestedMeta, forms: &str) -> Result<()> {
    if meta.input.peek(syn::Token![=]) || meta.input.peek(syn::token::Paren) {
        return Err(meta.error(format!(
            "`{}` takes no value: write {forms}",
            meta.path.to_token_stream()
        )));
    }
    Ok(())
}

/// Whether a field is marked `#[reclaim_size(skip)]`.
fn field_skipped(attrs: &[Attribute]) -> Result<bool> {
    let mut skip = false;
    for attr in attrs.iter().filter(|a| a.path().is_ident("reclaim_size")) {
        list_of(attr, FIELD_FORMS, "on a field")?;
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                no_value(&meta, FIELD_FORMS)?;
                if skip {
                    return Err(meta.error("`skip` is given twice"));
                }
                skip = true;
                Ok(())
            } else if meta.path.is_ident("drops_anywhere") || meta.path.is_ident("crate") {
                Err(meta.error(format!(
                    "`{}` goes on the type, not on a field: {CONTAINER_FORMS} before the \
                     `struct` or `enum`; on a field, {FIELD_FORMS}",
                    meta.path.to_token_stream()
                )))
            } else {
                Err(meta.error(format!(
                    "unknown `reclaim_size` attribute: on a field, {FIELD_FORMS}; on the type, \
                     {CONTAINER_FORMS}"
                )))
            }
        })?;
    }
    Ok(skip)
}

/// An error, spanned at the attribute, unless it is a list:
/// `#[reclaim_size(..)]`.
fn list_of(attr: &Attribute, forms: &str, place: &str) -> Result<()> {
    match &attr.meta {
        syn::Meta::List(_) => Ok(()),
        _ => Err(Error::new_spanned(
            attr,
            format!("`reclaim_size` takes arguments in parentheses: {place}, {forms}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(src: &str) -> std::result::Result<String, String> {
        let input: DeriveInput = syn::parse_str(src).map_err(|e| e.to_string())?;
        expand(&input)
            .map(|t| t.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn bounds_only_the_fields_that_name_a_parameter() {
        let out = expand_str("struct S<T, U> { a: Vec<T>, b: String, #[reclaim_size(skip)] c: U }")
            .unwrap();
        assert!(
            out.contains("Vec < T > : :: rcu_reclaim :: ReclaimSize"),
            "{out}"
        );
        assert!(!out.contains("String : :: rcu_reclaim"), "{out}");
        assert!(!out.contains("U : :: rcu_reclaim"), "{out}");
        assert!(
            out.contains("const PLAIN : :: core :: primitive :: bool = false"),
            "{out}"
        );
        assert!(!out.contains("DROPS_ANYWHERE"), "{out}");
    }

    #[test]
    fn recursive_fields_stay_out_of_the_constants_and_bounds() {
        let out = expand_str("enum T<X> { Leaf(X), Node(Vec<T<X>>, Option<Box<Self>>) }").unwrap();
        assert!(!out.contains("Vec < T < X > > :"), "{out}");
        assert!(!out.contains("__derive_field :: < Vec < T"), "{out}");
        assert!(out.contains("X : :: rcu_reclaim :: ReclaimSize"), "{out}");
        let out = expand_str("struct C { up: Option<std::sync::Arc<C>> }").unwrap();
        assert!(
            out.contains("const SHARED : :: core :: primitive :: bool = true"),
            "{out}"
        );
    }

    /// A packed struct's fields may be unaligned: each is copied out
    /// (`&{ self.field }`, checked `Copy` first) rather than borrowed,
    /// which rustc refuses (E0793); a generic one is bounded `Copy` too.
    #[test]
    fn a_packed_struct_copies_its_fields_out() {
        for repr in ["packed", "C, packed", "packed(2)"] {
            let src = format!(
                "#[repr({repr})] struct P<T> {{ a: u32, b: T, #[reclaim_size(skip)] c: String }}"
            );
            let out = expand_str(&src).unwrap();
            assert!(
                out.contains("& { self . a }") && out.contains("& { self . b }"),
                "{out}"
            );
            assert!(
                !out.contains("& self . a") && !out.contains("self . c"),
                "{out}"
            );
            assert!(out.contains("__derive_packed_field :: < u32 >"), "{out}");
            assert!(out.contains("T : :: core :: marker :: Copy"), "{out}");
        }
        let out = expand_str("#[repr(C)] struct S { a: u32 }").unwrap();
        assert!(
            out.contains("& self . a") && !out.contains("packed"),
            "{out}"
        );
    }

    #[test]
    fn the_crate_path_is_taken() {
        let out = expand_str("#[reclaim_size(crate = \"my::rr\")] struct S { a: String }").unwrap();
        assert!(out.contains("my :: rr :: ReclaimSize"), "{out}");
        assert!(!out.contains(":: rcu_reclaim"), "{out}");
    }

    #[test]
    fn bad_input_is_an_error_naming_the_forms() {
        let err = expand_str("union U { a: u32 }").unwrap_err();
        assert!(err.contains("does not support unions"), "{err}");
        let err = expand_str("#[reclaim_size(nope)] struct S;").unwrap_err();
        assert!(
            err.contains("unknown") && err.contains("drops_anywhere"),
            "{err}"
        );
        let err = expand_str("#[reclaim_size(skip)] struct S;").unwrap_err();
        assert!(err.contains("goes on a field"), "{err}");
        let err = expand_str("struct S { #[reclaim_size(drops_anywhere)] a: u8 }").unwrap_err();
        assert!(err.contains("goes on the type"), "{err}");
        let err = expand_str("struct S { #[reclaim_size] a: u8 }").unwrap_err();
        assert!(err.contains("parentheses"), "{err}");
        let err =
            expand_str("#[reclaim_size(drops_anywhere, drops_anywhere)] struct S;").unwrap_err();
        assert!(err.contains("twice"), "{err}");
        let err = expand_str("#[reclaim_size(crate = 7)] struct S;").unwrap_err();
        assert!(err.contains("expected string literal"), "{err}");
    }

    /// On a variant the attribute was ignored: `skip` there left the
    /// variant's fields counted, and a typo passed without a word.
    #[test]
    fn an_attribute_on_a_variant_is_an_error_naming_the_field_form() {
        for attr in ["skip", "drops_anywhere", "nope"] {
            let src = format!("enum E {{ #[reclaim_size({attr})] A(String), B }}");
            let err = expand_str(&src).unwrap_err();
            assert!(
                err.contains("does not go on a variant") && err.contains("on each of them"),
                "{attr}: {err}"
            );
        }
        let ok = expand_str("enum E { A(#[reclaim_size(skip)] String), B }").unwrap();
        assert!(ok.contains("Self :: A"), "{ok}");
    }

    /// A value given to a flag names the flag, not a missing comma.
    #[test]
    fn a_value_given_to_a_flag_says_it_takes_none() {
        let err = expand_str("struct S { #[reclaim_size(skip = true)] a: u8 }").unwrap_err();
        assert!(err.contains("`skip` takes no value"), "{err}");
        let err = expand_str("#[reclaim_size(drops_anywhere(yes))] struct S;").unwrap_err();
        assert!(err.contains("`drops_anywhere` takes no value"), "{err}");
    }

    /// crossbeam-epoch's Treiber node, derived as a port would first try:
    /// a `ManuallyDrop` (or `MaybeUninit`) field has no `ReclaimSize`, and
    /// in a generic type the error came at the retire, as "add
    /// `#[derive(..)]` to `ManuallyDrop<T>`" (rustc's "consider borrowing"
    /// hid the notes naming `skip`). It is now an error at the field that
    /// names `#[reclaim_size(skip)]` and the hand-written impl.
    #[test]
    fn a_field_not_dropped_with_the_value_is_an_error_naming_skip() {
        for (src, wrapper) in [
            (
                "struct Node<T> { data: ManuallyDrop<T>, next: AtomicPtr<Node<T>> }",
                "ManuallyDrop",
            ),
            (
                "struct N { data: std::mem::ManuallyDrop<String> }",
                "ManuallyDrop",
            ),
            (
                "enum E { A(u8, core::mem::ManuallyDrop<Vec<u8>>), B }",
                "ManuallyDrop",
            ),
            (
                "struct Slot<T> { v: std::mem::MaybeUninit<T> }",
                "MaybeUninit",
            ),
        ] {
            let err = expand_str(src).unwrap_err();
            assert!(
                err.contains(&format!("`{wrapper}`"))
                    && err.contains("#[reclaim_size(skip)]")
                    && err.contains("by hand"),
                "{src}: {err}"
            );
        }
        // Skipped, it counts its inline bytes only, as a moved-out element should.
        let out = expand_str(
            "struct Node<T> { #[reclaim_size(skip)] data: ManuallyDrop<T>, next: AtomicPtr<Node<T>> }",
        )
        .unwrap();
        assert!(
            !out.contains("ManuallyDrop < T > : :: rcu_reclaim"),
            "{out}"
        );
    }
}
