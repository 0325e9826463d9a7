//! Two nodes on one PostgreSQL database (`SPINDLE_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/test`), each with its own fake edge: what is published
//! through node A's API reaches the edge attached to node B, both nodes read the same history,
//! and cluster control commands and node announcements travel through the outbox. Fails
//! (never skips) when PostgreSQL is not reachable.
#![allow(clippy::unwrap_used)]

mod support;

use spindle_core::{Node, NodeIdentity};
use spindle_hub::config::{BrokerType, Secret};
use support::config;
use support::two_nodes as scenario;

fn dsn() -> String {
    std::env::var("SPINDLE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn test_prefix() -> String {
    format!("spt_{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// Nodes "a" and "b" on the database under a fresh table prefix.
async fn two_nodes() -> (Node, Node) {
    let prefix = test_prefix();
    let a = postgres_node("a", &prefix).await;
    let b = postgres_node("b", &prefix).await;
    (a, b)
}

async fn postgres_node(name: &str, prefix: &str) -> Node {
    let config = config(|c| {
        c.broker.enabled = true;
        c.broker.kind = BrokerType::Postgres;
        c.broker.postgres.dsn = Secret::new(dsn());
        c.broker.postgres.table_prefix = prefix.to_owned();
        c.broker.postgres.use_notify = true;
        c.broker.postgres.pool_size = 2;
    });
    Node::connect(config, NodeIdentity::named(name))
        .await
        .unwrap_or_else(|error| panic!("this test needs PostgreSQL at {}: {error}", dsn()))
}

#[tokio::test]
async fn an_unreachable_postgres_fails_node_start_clearly() {
    let config = config(|c| {
        c.broker.enabled = true;
        c.broker.kind = BrokerType::Postgres;
        c.broker.postgres.dsn =
            Secret::new("postgres://postgres@127.0.0.1:1/test?connect_timeout=1");
    });
    let error = Node::connect(config, NodeIdentity::named("x"))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("cannot connect to postgresql at 127.0.0.1:1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_on_node_a_reaches_an_edge_of_node_b() {
    let (a, b) = two_nodes().await;
    scenario::publication_reaches_both_edges(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_control_commands_reach_edges_of_every_node_once() {
    let (a, b) = two_nodes().await;
    scenario::control_commands_reach_every_edge_once(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_channels_list_every_node() {
    let (a, b) = two_nodes().await;
    scenario::info_and_channels_list_both_nodes(&a, &b).await;
}
