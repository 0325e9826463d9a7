//! Generates the Rust types of the `.proto` files with protox (no `protoc` needed).
//!
//! The client protocol and the server API are also spoken as JSON, with Centrifugo's rules
//! (docs/protocol.md §1.1): snake_case keys, zero values omitted except a few always-present fields,
//! `bytes` fields embedded as raw JSON. Those rules are derived here, field by field, from the
//! descriptors, so every message follows them and none is hand-written.

use prost_build::Config;
use prost_types::{
    FileDescriptorSet,
    field_descriptor_proto::{Label, Type},
};

/// Fields that Centrifugo always writes in JSON, even when zero or empty.
const ALWAYS_PRESENT: &[&str] = &[
    ".centrifugal.centrifuge.protocol.ClientInfo.user",
    ".centrifugal.centrifuge.protocol.ClientInfo.client",
    ".centrifugal.centrifuge.protocol.PresenceResult.presence",
    ".centrifugal.centrifuge.protocol.PresenceStatsResult.num_clients",
    ".centrifugal.centrifuge.protocol.PresenceStatsResult.num_users",
    ".centrifugal.centrifuge.protocol.HistoryResult.publications",
    ".centrifugal.centrifuge.protocol.HistoryResult.epoch",
    ".centrifugal.centrifuge.protocol.HistoryResult.offset",
    ".centrifugal.centrifugo.api.ClientInfo.user",
    ".centrifugal.centrifugo.api.ClientInfo.client",
    ".centrifugal.centrifugo.api.PresenceResult.presence",
    ".centrifugal.centrifugo.api.PresenceStatsResult.num_clients",
    ".centrifugal.centrifugo.api.PresenceStatsResult.num_users",
    ".centrifugal.centrifugo.api.HistoryResult.publications",
    ".centrifugal.centrifugo.api.HistoryResult.epoch",
    ".centrifugal.centrifugo.api.HistoryResult.offset",
    ".centrifugal.centrifugo.api.NodeResult.uid",
    ".centrifugal.centrifugo.api.NodeResult.name",
    ".centrifugal.centrifugo.api.NodeResult.version",
    ".centrifugal.centrifugo.api.NodeResult.num_clients",
    ".centrifugal.centrifugo.api.NodeResult.num_users",
    ".centrifugal.centrifugo.api.NodeResult.num_channels",
    ".centrifugal.centrifugo.api.NodeResult.num_subs",
    // `{"channels":{}}` even with no active channel: Centrifugo's struct tag has no omitempty,
    // and cent (pycent) cannot decode a ChannelsResult without it.
    ".centrifugal.centrifugo.api.ChannelsResult.channels",
    // Proxy requests always carry `user` (docs/protocol.md §8), `""` for anonymous connections.
    ".centrifugal.centrifugo.proxy.RefreshRequest.user",
    ".centrifugal.centrifugo.proxy.SubscribeRequest.user",
    ".centrifugal.centrifugo.proxy.PublishRequest.user",
    ".centrifugal.centrifugo.proxy.RPCRequest.user",
    ".centrifugal.centrifugo.proxy.SubRefreshRequest.user",
];

/// Repeated map-entry messages (see client.proto): a JSON object on the JSON side.
const ENTRY_LISTS: &[&str] = &[
    ".centrifugal.centrifuge.protocol.Connect.subs",
    ".centrifugal.centrifuge.protocol.ConnectResult.subs",
    ".centrifugal.centrifuge.protocol.PresenceResult.presence",
];

/// `bytes` fields whose JSON form is a JSON string holding the bytes as text, not raw JSON.
const BYTES_AS_STRING: &[&str] = &[".centrifugal.centrifuge.protocol.EmulationRequest.data"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");

    let json_fds = protox::compile(["client.proto", "api.proto"], ["proto"])?;
    let mut config = Config::new();
    config.bytes(["."]).btree_map(["."]);
    add_json_attributes(&mut config, &json_fds);
    config.compile_fds(json_fds)?;

    // The proxy protocol: the HTTP proxy speaks it as JSON with the same rules.
    let proxy_fds = protox::compile(["proxy.proto"], ["proto"])?;
    let mut config = Config::new();
    config.bytes(["."]).btree_map(["."]);
    add_json_attributes(&mut config, &proxy_fds);
    config.compile_fds(proxy_fds)?;

    let mesh_fds = protox::compile(["mesh.proto"], ["proto"])?;
    let mut config = Config::new();
    config
        .bytes(["."])
        .btree_map(["."])
        .extern_path(".centrifugal.centrifuge.protocol", "crate::client")
        .extern_path(".centrifugal.centrifugo.proxy", "crate::proxy")
        // A stream open carries a whole proxy request: boxed, so every other request (and
        // the link's message enum) stays small.
        .boxed(".spindle.mesh.v1.Request.kind.stream_open");
    config.compile_fds(mesh_fds)?;

    // The uni_grpc service and the gRPC proxy service (feature `grpc`): tonic stubs over the
    // already generated message types.
    if std::env::var_os("CARGO_FEATURE_GRPC").is_some() {
        compile_unistream()?;
        compile_proxy_service()?;
    }
    Ok(())
}

#[cfg(feature = "grpc")]
fn compile_unistream() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["unistream.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .extern_path(".centrifugal.centrifuge.protocol", "crate::client")
        .compile_fds(fds)?;
    Ok(())
}

/// `CentrifugoProxy` client and server stubs, written to `OUT_DIR/grpc/` (the messages' file
/// has the same package name).
#[cfg(feature = "grpc")]
fn compile_proxy_service() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("grpc");
    std::fs::create_dir_all(&out)?;
    let fds = protox::compile(["proxy.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .out_dir(out)
        // No `connect` constructor: it would clash with the service's `Connect` method.
        .build_transport(false)
        .extern_path(".centrifugal.centrifugo.proxy", "crate::proxy")
        .compile_fds(fds)?;
    Ok(())
}

#[cfg(not(feature = "grpc"))]
fn compile_proxy_service() -> Result<(), Box<dyn std::error::Error>> {
    Ok(())
}

#[cfg(not(feature = "grpc"))]
fn compile_unistream() -> Result<(), Box<dyn std::error::Error>> {
    Ok(())
}

fn add_json_attributes(config: &mut Config, fds: &FileDescriptorSet) {
    for file in &fds.file {
        let package = file.package();
        for message in &file.message_type {
            let message_path = format!(".{package}.{}", message.name());
            config.type_attribute(
                &message_path,
                "#[derive(::serde::Serialize, ::serde::Deserialize)] #[serde(default)]",
            );
            // Map entries are generated as BTreeMaps, not as messages: nothing to annotate.
            let map_entries: Vec<String> = message
                .nested_type
                .iter()
                .filter(|nested| nested.options.as_ref().is_some_and(|o| o.map_entry()))
                .map(|nested| format!("{message_path}.{}", nested.name()))
                .collect();
            for field in &message.field {
                let path = format!("{message_path}.{}", field.name());
                let is_map = map_entries.iter().any(|entry| entry == field.type_name());
                config.field_attribute(
                    &path,
                    json_field_attribute(&path, field_kind(field, is_map)),
                );
            }
        }
    }
}

enum FieldKind {
    Repeated,
    Map,
    Message,
    Bytes,
    String,
    Bool,
    Number,
}

fn field_kind(field: &prost_types::FieldDescriptorProto, is_map: bool) -> FieldKind {
    if field.label() == Label::Repeated {
        return if is_map {
            FieldKind::Map
        } else {
            FieldKind::Repeated
        };
    }
    match field.r#type() {
        Type::Message => FieldKind::Message,
        Type::Bytes => FieldKind::Bytes,
        Type::String => FieldKind::String,
        Type::Bool => FieldKind::Bool,
        _ => FieldKind::Number,
    }
}

fn json_field_attribute(path: &str, kind: FieldKind) -> String {
    let always = ALWAYS_PRESENT.contains(&path);
    let skip = |predicate: &str| {
        if always {
            String::new()
        } else {
            format!("skip_serializing_if = \"{predicate}\", ")
        }
    };
    match kind {
        FieldKind::Repeated if ENTRY_LISTS.contains(&path) => format!(
            "#[serde({}with = \"crate::json::entries\")]",
            skip("::std::vec::Vec::is_empty")
        ),
        FieldKind::Bytes if BYTES_AS_STRING.contains(&path) => format!(
            "#[serde({}with = \"crate::json::text_bytes\")]",
            skip("::prost::bytes::Bytes::is_empty")
        ),
        FieldKind::Bytes => format!(
            "#[serde({}with = \"crate::json::raw_bytes\")]",
            skip("::prost::bytes::Bytes::is_empty")
        ),
        FieldKind::Repeated => nullable(skip("::std::vec::Vec::is_empty")),
        FieldKind::Map => nullable(skip("::std::collections::BTreeMap::is_empty")),
        FieldKind::Message => nullable(skip("::std::option::Option::is_none")),
        FieldKind::String => nullable(skip("::std::string::String::is_empty")),
        FieldKind::Bool => nullable(skip("crate::json::is_false")),
        FieldKind::Number => nullable(skip("crate::json::is_zero")),
    }
}

/// A JSON `null` reads as the field's zero value (docs/protocol.md §1.1).
fn nullable(skip: String) -> String {
    format!("#[serde({skip}deserialize_with = \"crate::json::null_as_default\")]")
}
