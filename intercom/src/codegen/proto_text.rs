//! The `.proto` text of a generated service (`{Trait}Plugin::proto()`), assembled from the
//! same Rust types the generated code encodes, so the two cannot disagree.
//!
//! Layout, deterministic for a given trait: `syntax`, `package`, the service, the request
//! and response messages in method order, then the user's messages and enums sorted by
//! name.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::wire::{ProtoMap, ProtoValue};

/// A `.proto` file being assembled.
#[derive(Debug)]
pub struct ProtoFile {
    package: String,
    service: String,
    messages: Vec<String>,
    /// User types by name; `None` while one is being defined (recursive types).
    types: BTreeMap<String, Option<String>>,
}

/// One `rpc` line.
#[derive(Debug, Clone, Copy)]
pub struct Rpc<'a> {
    /// The method name (PascalCase).
    pub name: &'a str,
    /// Its doc comment lines.
    pub doc: &'a [&'a str],
    /// The request message.
    pub request: &'a str,
    /// Whether the client streams requests.
    pub client_streaming: bool,
    /// The response message.
    pub response: &'a str,
    /// Whether the server streams responses.
    pub server_streaming: bool,
}

fn comment(out: &mut String, indent: &str, doc: &[&str]) {
    for line in doc {
        let line = line.strip_prefix(' ').unwrap_or(line);
        if line.is_empty() {
            let _ = writeln!(out, "{indent}//");
        } else {
            let _ = writeln!(out, "{indent}// {line}");
        }
    }
}

impl ProtoFile {
    /// An empty file in `package`.
    pub fn new(package: &str) -> Self {
        Self {
            package: package.to_owned(),
            service: String::new(),
            messages: Vec::new(),
            types: BTreeMap::new(),
        }
    }

    /// Writes the service block.
    pub fn service(&mut self, name: &str, doc: &[&str], rpcs: &[Rpc<'_>]) {
        let out = &mut self.service;
        comment(out, "", doc);
        let _ = writeln!(out, "service {name} {{");
        for rpc in rpcs {
            comment(out, "  ", rpc.doc);
            let stream = |on: bool| if on { "stream " } else { "" };
            let _ = writeln!(
                out,
                "  rpc {}({}{}) returns ({}{});",
                rpc.name,
                stream(rpc.client_streaming),
                rpc.request,
                stream(rpc.server_streaming),
                rpc.response,
            );
        }
        out.push_str("}\n");
    }

    /// Adds a request or response message, after those added before.
    pub fn message(
        &mut self,
        name: &str,
        doc: &[&str],
        build: impl FnOnce(&mut MessageBuilder<'_>),
    ) {
        let text = self.message_text(name, doc, build);
        self.messages.push(text);
    }

    /// Defines the user message `name` once (later calls, including recursive ones while
    /// it is being defined, only return the name).
    pub fn define_message(
        &mut self,
        name: &str,
        doc: &[&str],
        build: impl FnOnce(&mut MessageBuilder<'_>),
    ) -> String {
        if !self.types.contains_key(name) {
            self.types.insert(name.to_owned(), None);
            let text = self.message_text(name, doc, build);
            self.types.insert(name.to_owned(), Some(text));
        }
        name.to_owned()
    }

    /// Defines the user enum `name` once; `values` are `(NAME, number, doc)`.
    pub fn define_enum(
        &mut self,
        name: &str,
        doc: &[&str],
        values: &[(&str, i32, &[&str])],
    ) -> String {
        if !self.types.contains_key(name) {
            let mut out = String::new();
            comment(&mut out, "", doc);
            let _ = writeln!(out, "enum {name} {{");
            for (value, number, doc) in values {
                comment(&mut out, "  ", doc);
                let _ = writeln!(out, "  {value} = {number};");
            }
            out.push_str("}\n");
            self.types.insert(name.to_owned(), Some(out));
        }
        name.to_owned()
    }

    fn message_text(
        &mut self,
        name: &str,
        doc: &[&str],
        build: impl FnOnce(&mut MessageBuilder<'_>),
    ) -> String {
        let mut builder = MessageBuilder {
            file: self,
            body: String::new(),
        };
        build(&mut builder);
        let body = builder.body;
        let mut out = String::new();
        comment(&mut out, "", doc);
        if body.is_empty() {
            let _ = writeln!(out, "message {name} {{}}");
        } else {
            let _ = write!(out, "message {name} {{\n{body}}}\n");
        }
        out
    }

    /// The whole file.
    pub fn finish(self) -> String {
        let mut out = String::from("syntax = \"proto3\";\n\n");
        let _ = writeln!(out, "package {};", self.package);
        for block in std::iter::once(self.service)
            .chain(self.messages)
            .chain(self.types.into_values().flatten())
        {
            if !block.is_empty() {
                out.push('\n');
                out.push_str(&block);
            }
        }
        out
    }
}

/// The fields of one message being written.
#[derive(Debug)]
pub struct MessageBuilder<'a> {
    file: &'a mut ProtoFile,
    body: String,
}

impl MessageBuilder<'_> {
    fn line(&mut self, doc: &[&str], field: std::fmt::Arguments<'_>) {
        comment(&mut self.body, "  ", doc);
        let _ = writeln!(self.body, "  {field};");
    }

    /// `T name = number;`
    pub fn singular<T: ProtoValue>(&mut self, name: &str, number: u32, doc: &[&str]) {
        let ty = T::proto_type(self.file);
        self.line(doc, format_args!("{ty} {name} = {number}"));
    }

    /// `optional T name = number;`
    pub fn optional<T: ProtoValue>(&mut self, name: &str, number: u32, doc: &[&str]) {
        let ty = T::proto_type(self.file);
        self.line(doc, format_args!("optional {ty} {name} = {number}"));
    }

    /// `repeated T name = number;`
    pub fn repeated<T: ProtoValue>(&mut self, name: &str, number: u32, doc: &[&str]) {
        let ty = T::proto_type(self.file);
        self.line(doc, format_args!("repeated {ty} {name} = {number}"));
    }

    /// `map<K, V> name = number;`
    pub fn map<M: ProtoMap>(&mut self, name: &str, number: u32, doc: &[&str]) {
        let key = M::Key::proto_type(self.file);
        let value = M::Value::proto_type(self.file);
        self.line(doc, format_args!("map<{key}, {value}> {name} = {number}"));
    }

    /// `uint32 name = number;`: the broker id of a callback serving `service`.
    pub fn callback(&mut self, name: &str, number: u32, doc: &[&str], service: &str) {
        let mut doc = doc.to_vec();
        let note = format!(" Broker id of a callback serving `{service}` (intercom).");
        doc.push(&note);
        self.line(&doc, format_args!("uint32 {name} = {number}"));
    }

    /// `reserved number;`: an argument of type `()`, which carries nothing.
    pub fn reserved(&mut self, name: &str, number: u32) {
        let note = format!(" `{name}: ()` carries nothing.");
        self.line(&[&note], format_args!("reserved {number}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_deterministic_file() {
        let mut file = ProtoFile::new("intercom.greeter");
        file.service(
            "Greeter",
            &[" Greets."],
            &[Rpc {
                name: "Greet",
                doc: &[],
                request: "GreetRequest",
                client_streaming: false,
                response: "GreetResponse",
                server_streaming: true,
            }],
        );
        file.message("GreetRequest", &[], |m| {
            m.singular::<String>("name", 1, &[" Who."]);
            m.reserved("nothing", 2);
        });
        file.message("GreetResponse", &[], |m| {
            m.repeated::<u32>("value", 1, &[]);
        });
        assert_eq!(
            file.finish(),
            "syntax = \"proto3\";\n\npackage intercom.greeter;\n\n// Greets.\nservice Greeter {\n  rpc Greet(GreetRequest) returns (stream GreetResponse);\n}\n\nmessage GreetRequest {\n  // Who.\n  string name = 1;\n  // `nothing: ()` carries nothing.\n  reserved 2;\n}\n\nmessage GreetResponse {\n  repeated uint32 value = 1;\n}\n"
        );
    }
}
