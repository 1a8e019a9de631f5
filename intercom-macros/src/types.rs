//! How a Rust type crosses the wire, decided from its syntax.
//!
//! A proc macro sees tokens, not types, so the *shape* of a field comes from the outer
//! type constructor (`Option<T>`, `Vec<T>`, `HashMap<K, V>`, `Arc<dyn Trait>`,
//! `Streaming<T>`, `()`), and the element types `T`, `K`, `V` are checked by the compiler
//! through the runtime's `ProtoValue` trait (whose `on_unimplemented` note lists what is
//! supported). Types that can never work (`&str`, tuples, `usize`, …) are rejected here
//! with a suggestion.

use syn::{GenericArgument, PathArguments, Type, TypeParamBound};

/// What is supported, for error messages.
pub(crate) const SUPPORTED: &str = "supported: integers (i8, i16, i32, i64, u8, u16, u32, u64), f32, f64, bool, String, Vec<u8>, Bytes, Vec<T>, Option<T>, HashMap<K, V>, BTreeMap<K, V>, (), types deriving intercom::Message or intercom::Enumeration, Arc<dyn Trait> callbacks of #[intercom::plugin] traits (arguments), and intercom::Streaming<T>";

/// How one value-carrying position is encoded.
#[derive(Clone)]
pub(crate) enum Shape {
    /// `()`: no field at all.
    Unit,
    /// One value (`T: ProtoValue`), omitted when default.
    Singular(Type),
    /// `Option<T>`: proto3 `optional`.
    Optional(Type),
    /// `Vec<T>` (not `Vec<u8>`, which is `bytes`): `repeated`.
    Repeated(Type),
    /// `HashMap<K, V>` / `BTreeMap<K, V>`: `map<K, V>`.
    Map(Type),
    /// `Arc<dyn Trait>`: a broker id (`uint32`). Holds the `dyn Trait` as written.
    Callback(Type),
}

/// A method argument or result: a value, or a stream of values.
#[derive(Clone)]
pub(crate) enum Flow {
    Value(Shape),
    Stream { item: Box<Type>, shape: Shape },
}

/// Where a type appears (what is allowed depends on it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    Argument,
    Result,
    StreamItem,
    Field,
}

/// The last path segment's name and its angle-bracketed type arguments.
fn last_segment(ty: &Type) -> Option<(String, Vec<&Type>)> {
    let Type::Path(tp) = ty else { return None };
    if tp.qself.is_some() {
        return None;
    }
    let segment = tp.path.segments.last()?;
    let args = match &segment.arguments {
        PathArguments::None => Vec::new(),
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        PathArguments::Parenthesized(_) => return None,
    };
    Some((segment.ident.to_string(), args))
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(t) if t.elems.is_empty())
}

fn strip_group(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => strip_group(&g.elem),
        Type::Paren(p) => strip_group(&p.elem),
        other => other,
    }
}

/// `ty` as a person writes it (`&str`, not `& str`).
pub(crate) fn display(ty: &Type) -> String {
    let mut shown = quote::quote!(#ty).to_string();
    for (from, to) in [
        ("& ", "&"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
        (":: ", "::"),
        (" ::", "::"),
    ] {
        shown = shown.replace(from, to);
    }
    shown.trim_start_matches("::").to_owned()
}

fn unsupported(ty: &Type, hint: &str) -> syn::Error {
    let shown = display(ty);
    let hint = if hint.is_empty() {
        String::new()
    } else {
        format!("{hint}; ")
    };
    syn::Error::new_spanned(
        ty,
        format!("unsupported type `{shown}` in a plugin interface: {hint}{SUPPORTED}"),
    )
}

/// Integer, `bool` and `String` spellings allowed as map keys.
const MAP_KEYS: &[&str] = &[
    "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "bool", "String",
];

/// Rejects types no impl could make work, with a hint.
fn reject_impossible(ty: &Type) -> syn::Result<()> {
    match ty {
        Type::Reference(r) => {
            let hint = match last_segment(&r.elem).map(|(name, _)| name) {
                Some(name) if name == "str" => "use `String` (arguments are owned)",
                _ => "arguments and results are owned values, not references",
            };
            Err(unsupported(ty, hint))
        }
        Type::Tuple(_) => Err(unsupported(
            ty,
            "tuples have no protobuf form; use a struct with #[derive(intercom::Message)]",
        )),
        Type::Array(_) | Type::Slice(_) => Err(unsupported(ty, "use `Vec<T>`")),
        Type::ImplTrait(_) | Type::TraitObject(_) => Err(unsupported(
            ty,
            "trait objects are callbacks only as `Arc<dyn Trait>`",
        )),
        Type::Ptr(_)
        | Type::BareFn(_)
        | Type::Never(_)
        | Type::Infer(_)
        | Type::Macro(_)
        | Type::Verbatim(_) => Err(unsupported(ty, "")),
        Type::Path(_) => {
            let Some((name, _)) = last_segment(ty) else {
                return Err(unsupported(ty, ""));
            };
            let hint = match name.as_str() {
                "usize" | "isize" => "its size differs between platforms; use `u64`/`i64`",
                "i128" | "u128" => "protobuf has no 128-bit integers; use two `u64` or `Vec<u8>`",
                "char" => "use `String` or `u32`",
                "str" => "use `String`",
                "Self" => "`Self` is not a concrete type in a plugin interface",
                "HashSet" | "BTreeSet" | "VecDeque" | "LinkedList" => "use `Vec<T>`",
                "Rc" | "RefCell" | "Cell" | "Mutex" | "RwLock" => "send the value itself",
                _ => return Ok(()),
            };
            Err(unsupported(ty, hint))
        }
        _ => Ok(()),
    }
}

/// The element of a collection: one protobuf value (`ProtoValue`), not itself a shape.
fn element(ty: &Type) -> syn::Result<Type> {
    let ty = strip_group(ty);
    if is_unit(ty) {
        return Err(unsupported(ty, "`()` cannot be an element"));
    }
    reject_impossible(ty)?;
    if let Some((name, args)) = last_segment(ty) {
        let nested = match name.as_str() {
            "Vec" if is_u8(args.first().copied()) => false,
            "Option" | "Vec" | "HashMap" | "BTreeMap" => true,
            "Arc" => {
                return Err(unsupported(
                    ty,
                    "callbacks (`Arc<dyn Trait>`) must be direct method arguments",
                ));
            }
            "Streaming" => {
                return Err(unsupported(
                    ty,
                    "`Streaming<T>` must be the whole argument or the whole `Ok` type",
                ));
            }
            _ => false,
        };
        if nested {
            return Err(unsupported(
                ty,
                "protobuf cannot nest `Option`, `Vec` and maps directly; wrap the inner value in a struct with #[derive(intercom::Message)]",
            ));
        }
    }
    Ok(ty.clone())
}

fn is_u8(ty: Option<&Type>) -> bool {
    ty.and_then(|t| last_segment(strip_group(t)))
        .is_some_and(|(name, args)| name == "u8" && args.is_empty())
}

/// The `dyn Trait` of `Arc<dyn Trait>` (only `dyn Path`, no extra bounds).
fn callback_trait(arc: &Type, inner: &Type) -> syn::Result<Type> {
    let Type::TraitObject(object) = strip_group(inner) else {
        return Err(unsupported(
            arc,
            "`Arc` is supported only as a callback, `Arc<dyn Trait>` with an #[intercom::plugin] trait",
        ));
    };
    let mut traits = object.bounds.iter().filter_map(|b| match b {
        TypeParamBound::Trait(t) => Some(t),
        _ => None,
    });
    match (traits.next(), traits.next(), object.bounds.len()) {
        (Some(t), None, 1) if t.lifetimes.is_none() => Ok(strip_group(inner).clone()),
        _ => Err(syn::Error::new_spanned(
            inner,
            "write callbacks as `Arc<dyn Trait>` with no extra bounds: `Send + Sync + 'static` come from the plugin trait's supertraits",
        )),
    }
}

/// The shape of a value position.
fn shape(ty: &Type, position: Position) -> syn::Result<Shape> {
    let ty = strip_group(ty);
    if is_unit(ty) {
        return Ok(Shape::Unit);
    }
    reject_impossible(ty)?;
    let Some((name, args)) = last_segment(ty) else {
        return Ok(Shape::Singular(ty.clone()));
    };
    let one = |what: &str| -> syn::Result<&Type> {
        match args.as_slice() {
            [t] => Ok(t),
            _ => Err(unsupported(
                ty,
                &format!("`{what}` takes one type argument"),
            )),
        }
    };
    match name.as_str() {
        "Option" => Ok(Shape::Optional(element(one("Option")?)?)),
        "Vec" if is_u8(args.first().copied()) => Ok(Shape::Singular(ty.clone())),
        "Vec" => Ok(Shape::Repeated(element(one("Vec")?)?)),
        "HashMap" | "BTreeMap" => {
            let [key, value] = args.as_slice() else {
                return Err(unsupported(
                    ty,
                    "maps take exactly a key and a value type (no custom hasher)",
                ));
            };
            let key_ok = last_segment(strip_group(key))
                .is_some_and(|(k, a)| a.is_empty() && MAP_KEYS.contains(&k.as_str()));
            if !key_ok {
                return Err(unsupported(
                    key,
                    "protobuf map keys must be integers, `bool` or `String`",
                ));
            }
            element(value)?;
            Ok(Shape::Map(ty.clone()))
        }
        "Arc" => {
            let inner = one("Arc")?;
            let object = callback_trait(ty, inner)?;
            if position == Position::Argument {
                Ok(Shape::Callback(object))
            } else {
                Err(unsupported(
                    ty,
                    "callbacks (`Arc<dyn Trait>`) can only be method arguments",
                ))
            }
        }
        "Streaming" => Err(unsupported(
            ty,
            "`Streaming<T>` must be the whole argument or the whole `Ok` type, not nested",
        )),
        _ => Ok(Shape::Singular(ty.clone())),
    }
}

/// The flow of a method argument or `Ok` type.
pub(crate) fn flow(ty: &Type, position: Position) -> syn::Result<Flow> {
    let stripped = strip_group(ty);
    if let Some((name, args)) = last_segment(stripped)
        && name == "Streaming"
        && matches!(position, Position::Argument | Position::Result)
    {
        {
            let [item] = args.as_slice() else {
                return Err(unsupported(ty, "`Streaming` takes one type argument"));
            };
            let item_shape = shape(item, Position::StreamItem)?;
            return Ok(Flow::Stream {
                item: Box::new((*item).clone()),
                shape: item_shape,
            });
        }
    }
    Ok(Flow::Value(shape(ty, position)?))
}

/// The shape of a struct field of `#[derive(intercom::Message)]`.
pub(crate) fn field_shape(ty: &Type) -> syn::Result<Shape> {
    shape(ty, Position::Field)
}

/// `Ok`/`Err` of a `Result<T, E>` return type.
pub(crate) fn result_parts(ty: &Type) -> Option<(&Type, &Type)> {
    match last_segment(strip_group(ty)) {
        Some((name, args)) if name == "Result" => match args.as_slice() {
            [ok, err] => Some((ok, err)),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    fn shape_of(ty: Type) -> Result<Shape, String> {
        shape(&ty, Position::Argument).map_err(|e| e.to_string())
    }

    fn name(shape: Result<Shape, String>) -> String {
        match shape {
            Ok(Shape::Unit) => "unit".into(),
            Ok(Shape::Singular(_)) => "singular".into(),
            Ok(Shape::Optional(_)) => "optional".into(),
            Ok(Shape::Repeated(_)) => "repeated".into(),
            Ok(Shape::Map(_)) => "map".into(),
            Ok(Shape::Callback(t)) => format!("callback {}", display(&t)),
            Err(e) => e,
        }
    }

    #[test]
    fn shapes() {
        assert_eq!(name(shape_of(parse_quote!(()))), "unit");
        assert_eq!(name(shape_of(parse_quote!(String))), "singular");
        assert_eq!(name(shape_of(parse_quote!(Vec<u8>))), "singular");
        assert_eq!(
            name(shape_of(parse_quote!(::std::vec::Vec<u8>))),
            "singular"
        );
        assert_eq!(name(shape_of(parse_quote!(Vec<u32>))), "repeated");
        assert_eq!(name(shape_of(parse_quote!(Vec<Vec<u8>>))), "repeated");
        assert_eq!(name(shape_of(parse_quote!(Option<Point>))), "optional");
        assert_eq!(name(shape_of(parse_quote!(HashMap<String, i64>))), "map");
        assert_eq!(
            name(shape_of(parse_quote!(Arc<dyn AddHelper>))),
            "callback dyn AddHelper"
        );
        assert_eq!(name(shape_of(parse_quote!(Point))), "singular");
    }

    #[test]
    fn rejections_name_the_type_and_hint() {
        let err = name(shape_of(parse_quote!(&str)));
        assert!(
            err.starts_with("unsupported type `&str` in a plugin interface: use `String`"),
            "{err}"
        );
        assert!(err.contains("supported: integers"), "{err}");
        for ty in [
            parse_quote!((i32, i32)),
            parse_quote!(usize),
            parse_quote!(Vec<Option<i32>>),
            parse_quote!(Option<Vec<i32>>),
            parse_quote!(HashMap<f64, i32>),
            parse_quote!(Arc<String>),
            parse_quote!(Arc<dyn AddHelper + Send>),
            parse_quote!(Option<Streaming<u8>>),
            parse_quote!(HashSet<String>),
        ] {
            assert!(shape_of(ty).is_err());
        }
        assert!(shape(&parse_quote!(Arc<dyn A>), Position::Field).is_err());
    }

    #[test]
    fn streams_only_at_the_top() {
        let ty: Type = parse_quote!(Streaming<Vec<u8>>);
        assert!(matches!(
            flow(&ty, Position::Result),
            Ok(Flow::Stream { .. })
        ));
        assert!(flow(&parse_quote!(Streaming<Streaming<u8>>), Position::Result).is_err());
    }

    #[test]
    fn results() {
        let ty: Type = parse_quote!(Result<String, Status>);
        assert!(result_parts(&ty).is_some());
        assert!(result_parts(&parse_quote!(Result<String>)).is_none());
        assert!(result_parts(&parse_quote!(String)).is_none());
    }
}
