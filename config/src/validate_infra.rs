//! Validation of the infrastructure sections: engine / broker / presence manager, transports,
//! mesh, consumers.

use super::Config;
use super::Role;
use super::duration::Duration;
use super::engine::{Redis, check_postgres_dsn, check_redis_address, check_table_prefix};
use super::enums::{BrokerType, EngineType, PresenceManagerType};
use super::mesh::check_host_port;
use super::transport::ConnectCodeToHttpTransform;
use super::validate::{GIB, MIB, Problems};

pub(crate) fn validate_engine(c: &Config, p: &mut Problems) {
    validate_redis(
        "engine.redis",
        &c.engine.redis,
        c.engine.kind == EngineType::Redis,
        p,
    );
    let broker = &c.broker;
    let broker_redis = broker.enabled && broker.kind == BrokerType::Redis;
    validate_redis("broker.redis", &broker.redis, broker_redis, p);
    let pm_redis =
        c.presence_manager.enabled && c.presence_manager.kind == PresenceManagerType::Redis;
    validate_redis(
        "presence_manager.redis",
        &c.presence_manager.redis,
        pm_redis,
        p,
    );
    if broker.enabled && broker.kind == BrokerType::RedisNats {
        p.add(
            "broker.type",
            "\"redisnats\" is not supported by Spindle yet",
        );
    }
    if broker.enabled && broker.kind == BrokerType::Nats && broker.nats.url.is_empty() {
        p.add(
            "broker.nats.url",
            "must be set when broker.type is \"nats\"",
        );
    }
    let pg = &broker.postgres;
    if broker.enabled && broker.kind == BrokerType::Postgres && pg.dsn.is_empty() {
        p.add(
            "broker.postgres.dsn",
            "must be set when broker.type is \"postgres\"",
        );
    }
    if broker.enabled && broker.kind == BrokerType::Postgres {
        if let Err(reason) = check_postgres_dsn(pg.dsn.expose()) {
            p.add("broker.postgres.dsn", reason);
        }
        if let Err(reason) = check_table_prefix(&pg.table_prefix) {
            p.add("broker.postgres.table_prefix", reason);
        }
    }
    p.range("broker.postgres.pool_size", pg.pool_size, 1, 1000);
    p.range("broker.postgres.num_shards", pg.num_shards, 1, 1024);
    p.range(
        "broker.postgres.outbox.batch_size",
        pg.outbox.batch_size,
        1,
        100_000,
    );
    let days = [
        (
            "broker.postgres.partition_lookahead_days",
            pg.partition_lookahead_days,
            365,
        ),
        (
            "broker.postgres.partition_retention_days",
            pg.partition_retention_days,
            3_650,
        ),
    ];
    for (path, value, max) in days {
        p.range(path, value, 1, max);
    }
    p.range(
        "shared_poll.concurrency_limit",
        c.shared_poll.concurrency_limit,
        0,
        100_000,
    );
}

fn validate_redis(path: &str, redis: &Redis, in_use: bool, p: &mut Problems) {
    let lists = [
        ("address", &redis.address),
        ("cluster_address", &redis.cluster_address),
        ("sentinel_address", &redis.sentinel_address),
    ];
    for (key, entries) in lists {
        for (i, entry) in entries.iter().enumerate() {
            if let Err(reason) = check_redis_address(entry) {
                p.add(format!("{path}.{key}[{i}]"), reason);
            }
        }
    }
    if in_use && lists.iter().all(|(_, entries)| entries.is_empty()) {
        p.add(format!("{path}.address"), "no Redis address configured");
    }
    if !redis.sentinel_address.is_empty() && redis.sentinel_master_name.is_empty() {
        p.add(
            format!("{path}.sentinel_master_name"),
            "required with sentinel_address",
        );
    }
}

pub(crate) fn validate_transports(c: &Config, p: &mut Problems) {
    let message_limits = [
        (
            "websocket.message_size_limit",
            c.websocket.message_size_limit,
        ),
        (
            "uni_websocket.message_size_limit",
            c.uni_websocket.message_size_limit,
        ),
        (
            "webtransport.message_size_limit",
            c.webtransport.message_size_limit,
        ),
        ("sse.max_request_body_size", c.sse.max_request_body_size),
        (
            "http_stream.max_request_body_size",
            c.http_stream.max_request_body_size,
        ),
        (
            "emulation.max_request_body_size",
            c.emulation.max_request_body_size,
        ),
        (
            "uni_sse.max_request_body_size",
            c.uni_sse.max_request_body_size,
        ),
        (
            "uni_http_stream.max_request_body_size",
            c.uni_http_stream.max_request_body_size,
        ),
    ];
    for (path, value) in message_limits {
        p.range(path, value, 64, 64 * MIB);
    }
    let ws = &c.websocket;
    let uni = &c.uni_websocket;
    let sockets = [
        (
            "websocket",
            ws.compression_level,
            ws.compression_min_size,
            ws.write_timeout,
        ),
        (
            "uni_websocket",
            uni.compression_level,
            uni.compression_min_size,
            uni.write_timeout,
        ),
    ];
    for (section, level, min_size, write_timeout) in sockets {
        p.range(&format!("{section}.compression_level"), level, -2, 9);
        p.range(
            &format!("{section}.compression_min_size"),
            min_size,
            0,
            64 * MIB,
        );
        let max_timeout = Duration::from_secs(60);
        p.range(
            &format!("{section}.write_timeout"),
            write_timeout,
            Duration::ZERO,
            max_timeout,
        );
    }
    let buffers = [
        ("websocket.read_buffer_size", ws.read_buffer_size, 16 * MIB),
        (
            "websocket.write_buffer_size",
            ws.write_buffer_size,
            16 * MIB,
        ),
        (
            "websocket.decompressed_message_size_limit",
            ws.decompressed_message_size_limit,
            GIB,
        ),
        (
            "uni_websocket.read_buffer_size",
            uni.read_buffer_size,
            16 * MIB,
        ),
        (
            "uni_websocket.write_buffer_size",
            uni.write_buffer_size,
            16 * MIB,
        ),
        (
            "uni_websocket.decompressed_message_size_limit",
            uni.decompressed_message_size_limit,
            GIB,
        ),
    ];
    for (path, value, max) in buffers {
        p.range(path, value, 0, max);
    }
    if c.webtransport.enabled && !c.http_server.http3.enabled {
        p.add("webtransport.enabled", "needs http_server.http3.enabled");
    }
    // HTTP/3 runs over QUIC, which has no plaintext form.
    if c.http_server.http3.enabled && !c.http_server.tls.enabled {
        p.add("http_server.http3.enabled", "needs http_server.tls enabled");
    }
    let http_transforms = [
        (
            "uni_sse",
            &c.uni_sse.connect_code_to_http_response.transforms,
        ),
        (
            "uni_http_stream",
            &c.uni_http_stream.connect_code_to_http_response.transforms,
        ),
    ];
    for (section, transforms) in http_transforms {
        for (i, t) in transforms.iter().enumerate() {
            let path = format!("{section}.connect_code_to_http_response.transforms[{i}]");
            validate_http_transform(&path, t, p);
        }
    }
}

fn validate_http_transform(path: &str, t: &ConnectCodeToHttpTransform, p: &mut Problems) {
    if t.code == 0 {
        p.add(format!("{path}.code"), "must be set");
    }
    p.range(
        &format!("{path}.to.status_code"),
        t.to.status_code,
        100,
        599,
    );
}

pub(crate) fn validate_mesh(c: &Config, p: &mut Problems) {
    let mesh = &c.mesh;
    if let Err(reason) = check_host_port(&mesh.listen, true) {
        p.add("mesh.listen", reason);
    }
    for (i, core) in mesh.cores.iter().enumerate() {
        if let Err(reason) = check_host_port(core, false) {
            p.add(format!("mesh.cores[{i}]"), reason);
        }
    }
    let tls = &mesh.tls;
    let set = [&tls.cert_file, &tls.key_file, &tls.ca_file]
        .iter()
        .filter(|f| !f.is_empty())
        .count();
    if set != 0 && set != 3 {
        p.add(
            "mesh.tls",
            "set cert_file, key_file and ca_file together (or none)",
        );
    }
    let interval = mesh.heartbeat_interval;
    p.range(
        "mesh.heartbeat_interval",
        interval,
        Duration::from_millis(100),
        Duration::from_secs(60),
    );
    p.range(
        "mesh.link_timeout",
        mesh.link_timeout,
        Duration::from(interval.as_std().saturating_mul(2)),
        Duration::from_secs(300),
    );
    p.range("mesh.lanes", mesh.lanes, 1, 64);
    p.range(
        "mesh.repair.max_publications",
        mesh.repair.max_publications,
        1,
        100_000,
    );
    p.range("mesh.repair.concurrency", mesh.repair.concurrency, 1, 1024);
    p.range(
        "mesh.edge_queue_max_size",
        mesh.edge_queue_max_size,
        1 << 20,
        4 << 30,
    );
    p.range(
        "mesh.repair.timeout",
        mesh.repair.timeout,
        Duration::from_millis(100),
        Duration::from_secs(60),
    );
    p.range(
        "mesh.unlinked_grace",
        mesh.unlinked_grace,
        Duration::from_secs(1),
        Duration::from_secs(3600),
    );
    if p.1 != Role::Serve {
        let role = p.1.name();
        if [&tls.cert_file, &tls.key_file, &tls.ca_file]
            .iter()
            .any(|f| f.is_empty())
        {
            p.add(
                "mesh.tls",
                format!(
                    "spindle {role} needs cert_file, key_file and ca_file (`spindle mesh gencerts` \
                     writes development ones)"
                ),
            );
        }
        if mesh.node_name.is_empty() && c.node.name.is_empty() {
            p.add(
                "mesh.node_name",
                format!("spindle {role} needs a mesh name (the DNS name its certificate carries)"),
            );
        }
    }
    if p.1 == Role::Edge && mesh.cores.is_empty() {
        p.add(
            "mesh.cores",
            "an edge needs at least one core address (host:port)",
        );
    }
    if !mesh.node_name.is_empty() && !is_dns_name(&mesh.node_name) {
        p.add(
            "mesh.node_name",
            "must be a DNS name (letters, digits, '-', '.'): the name its certificate carries",
        );
    }
}

/// A host name as certificates carry it: labels of letters, digits and '-', joined by '.'.
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

pub(crate) fn validate_consumers(c: &Config, p: &mut Problems) {
    let mut seen = Vec::new();
    for (i, consumer) in c.consumers.iter().enumerate() {
        let path = format!("consumers[{i}]");
        let Some(object) = consumer.as_object() else {
            p.add(path, "must be an object");
            continue;
        };
        let name = object
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or_default();
        let name_ok =
            name.len() >= 2 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_ok {
            p.add(
                format!("{path}.name"),
                format!("{name:?} must match ^[a-zA-Z0-9_]{{2,}}$"),
            );
        } else if seen.contains(&name) {
            p.add(
                format!("{path}.name"),
                format!("duplicate consumer name {name:?}"),
            );
        }
        seen.push(name);
        if object
            .get("type")
            .and_then(|t| t.as_str())
            .is_none_or(str::is_empty)
        {
            p.add(format!("{path}.type"), "must be set");
        }
    }
}
