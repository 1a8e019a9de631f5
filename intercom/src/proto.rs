//! go-plugin's internal services (package `plugin`), generated from `proto/`.
#![allow(missing_docs, unreachable_pub, clippy::all)]

tonic::include_proto!("plugin");
