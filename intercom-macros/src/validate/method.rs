//! One trait method, checked: its signature (`async fn`, `&self`, nothing generic), its
//! arguments (the request message, or one `Streaming<T>`) and its return type (the
//! response). Every problem is reported at its token; all are collected.

use proc_macro2::Span;
use quote::ToTokens;
use syn::ext::IdentExt as _;
use syn::{FnArg, Ident, ReturnType};

use super::{Ctxt, Field, Input, Method, Output, cfg_attrs};
use crate::naming::MethodNames;
use crate::parse::{RpcArg, RpcMethod};
use crate::types::{self, Flow, Position};

/// The checks of one method: the context errors go to, and whether all passed so far.
struct Check<'c> {
    cx: &'c mut Ctxt,
    ok: bool,
}

impl Check<'_> {
    fn fail(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.cx.error_spanned_by(tokens, message);
        self.ok = false;
    }

    fn push(&mut self, error: syn::Error) {
        self.cx.push(error);
        self.ok = false;
    }
}

/// `rpc` as a [`Method`], or `None` after reporting every problem with it.
pub(super) fn check_method<'a>(
    cx: &mut Ctxt,
    rpc: &'a RpcMethod,
    names: MethodNames,
) -> Option<Method<'a>> {
    let name = rpc.ident.unraw().to_string();
    let mut check = Check { cx, ok: true };
    check_signature(&mut check, rpc, &name);
    let input = check_arguments(&mut check, rpc);
    let output = check_output(&mut check, rpc, &name);
    match (check.ok, input, output) {
        (true, Some(input), Some(output)) => Some(Method {
            rpc,
            names,
            input,
            output,
            cfgs: cfg_attrs(&rpc.attrs),
        }),
        _ => None,
    }
}

/// `async fn name(&self, …)`: not const, unsafe, extern, variadic or generic.
fn check_signature(check: &mut Check<'_>, rpc: &RpcMethod, name: &str) {
    let sig = &rpc.sig;
    if sig.asyncness.is_none() {
        check.fail(
            sig.fn_token,
            format!(
                "plugin methods must be `async fn`: write `async fn {name}(&self, …)` (every call crosses a process boundary)"
            ),
        );
    }
    if let Some(constness) = &sig.constness {
        check.fail(constness, "plugin methods cannot be `const`");
    }
    if let Some(unsafety) = &sig.unsafety {
        check.fail(unsafety, "plugin methods cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        check.fail(abi, "plugin methods cannot have an ABI");
    }
    if let Some(variadic) = &sig.variadic {
        check.fail(variadic, "plugin methods cannot be variadic");
    }
    if !sig.generics.params.is_empty() {
        check.fail(
            &sig.generics,
            format!(
                "plugin methods cannot be generic: `{name}` needs one concrete wire type per argument"
            ),
        );
    } else if let Some(where_clause) = &sig.generics.where_clause {
        check.fail(where_clause, "plugin methods cannot have a `where` clause");
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(r))
            if r.reference.as_ref().is_some_and(|(_, lt)| lt.is_none())
                && r.mutability.is_none()
                && r.colon_token.is_none() => {}
        Some(FnArg::Receiver(r)) => check.fail(
            r,
            format!(
                "plugin methods take `&self`, not `{}`: the client is shared and callbacks are `Arc<dyn Trait>`; keep mutable state behind a lock in the implementation",
                r.to_token_stream()
            ),
        ),
        _ => check.fail(
            &rpc.ident,
            format!(
                "`{name}` needs a `&self` receiver: plugin methods are called on an implementation"
            ),
        ),
    }
}

/// The request: one field per argument (numbered from 1), or a lone `Streaming<T>`.
fn check_arguments(check: &mut Check<'_>, rpc: &RpcMethod) -> Option<Input> {
    let mut fields = Vec::new();
    let mut stream_arg = None;
    for (index, arg) in rpc.args.iter().enumerate() {
        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let Some(ident) = check_argument_name(check, arg) else {
            continue;
        };
        let field = |ty, shape, number| Field {
            ident: ident.clone(),
            name: ident.unraw().to_string(),
            number,
            ty,
            shape,
        };
        match types::flow(&arg.ty, Position::Argument) {
            Ok(Flow::Value(shape)) => fields.push(field(arg.ty.clone(), shape, number)),
            Ok(Flow::Stream { item, shape }) => stream_arg = Some((arg, field(*item, shape, 1))),
            Err(e) => check.push(e),
        }
    }
    match stream_arg {
        Some((_, field)) if rpc.args.len() == 1 => Some(Input::Stream(Box::new(field))),
        Some((arg, _)) => {
            check.fail(
                &arg.ty,
                "a `Streaming<T>` argument must be the method's only argument (each item is one request message)",
            );
            None
        }
        None => Some(Input::Unary(fields)),
    }
}

/// An argument's name, which becomes its protobuf field's: plain, not reserved, and
/// without attributes.
fn check_argument_name<'a>(check: &mut Check<'_>, arg: &'a RpcArg) -> Option<&'a Ident> {
    if let Some(attr) = arg.attrs.first() {
        check.fail(
            attr,
            "attributes on plugin method arguments are not supported",
        );
    }
    let Some(ident) = arg.ident() else {
        check.fail(
            &arg.pat,
            "plugin method arguments need a plain name (`name: Type`): it becomes the protobuf field name",
        );
        return None;
    };
    if ident.unraw().to_string().starts_with("__") {
        check.fail(
            ident,
            "argument names starting with `__` are reserved for generated code",
        );
    }
    Some(ident)
}

/// What a method's return type must be, after "`name` ".
const MUST_RETURN: &str = "must return `Result<T, E>` (with `E: Into<intercom::Status> + From<intercom::Status>`, e.g. `intercom::Status`): every call can fail on the wire";

/// The response: `Result<T, E>`, with `T` a value (field 1, `value`) or a stream of them.
fn check_output(check: &mut Check<'_>, rpc: &RpcMethod, name: &str) -> Option<Output> {
    let ty = match &rpc.sig.output {
        ReturnType::Default => {
            check.fail(&rpc.ident, format!("`{name}` {MUST_RETURN}"));
            return None;
        }
        ReturnType::Type(_, ty) => ty,
    };
    let Some((ok_ty, err_ty)) = types::result_parts(ty) else {
        check.fail(
            ty,
            format!("unsupported return type: `{name}` {MUST_RETURN}"),
        );
        return None;
    };
    let (stream, ty, shape) = match types::flow(ok_ty, Position::Result) {
        Ok(Flow::Value(shape)) => (false, ok_ty.clone(), shape),
        Ok(Flow::Stream { item, shape }) => (true, *item, shape),
        Err(e) => {
            check.push(e);
            return None;
        }
    };
    Some(Output {
        ok: ok_ty.clone(),
        err: err_ty.clone(),
        stream,
        field: Field {
            ident: Ident::new("value", Span::call_site()),
            name: "value".into(),
            number: 1,
            ty,
            shape,
        },
    })
}
