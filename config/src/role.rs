//! Roles and what each sees of the configuration.
//!
//! One file may configure every role; each process reads it for its own role (`spindle serve`,
//! `spindle core`, `spindle edge`). A role requires only the settings it uses (an edge needs no
//! proxy endpoint: it asks its core, which calls the backend) and keeps only what it uses (an
//! edge process never holds the server API key, broker credentials or proxy endpoints, so a
//! compromised edge gives none of them away).

use super::{Broker, Config, Engine, GrpcApi, HttpApi, PresenceManager};
use serde::{Deserialize, Serialize};

/// What a process runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An edge and a core in one process (`spindle serve`).
    #[default]
    Serve,
    /// Broker, history, presence, server API, proxies; edges attach over the mesh.
    Core,
    /// Client transports and fan-out, linked to a core over the mesh.
    Edge,
}

impl Role {
    /// Whether this role calls the backend's proxies itself (the edge asks its core).
    pub fn calls_proxies(self) -> bool {
        !matches!(self, Role::Edge)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Core => "core",
            Role::Edge => "edge",
        }
    }
}

impl Config {
    /// The configuration as `role` keeps it. An edge drops the server API and its key, the
    /// engine, broker and presence sections with their credentials, the consumers, and every
    /// proxy's endpoint and TLS material (the names, headers and timeouts stay: the edge still
    /// decides which proxy a command needs and how long to wait for its core).
    pub fn for_role(mut self, role: Role) -> Config {
        if role != Role::Edge {
            return self;
        }
        self.http_api = HttpApi::default();
        self.grpc_api = GrpcApi::default();
        self.engine = Engine::default();
        self.broker = Broker::default();
        self.presence_manager = PresenceManager::default();
        self.consumers.clear();
        let proxies = [
            &mut self.client.proxy.connect.proxy,
            &mut self.client.proxy.refresh.proxy,
            &mut self.channel.proxy.subscribe,
            &mut self.channel.proxy.publish,
            &mut self.channel.proxy.sub_refresh,
            &mut self.rpc.proxy,
        ]
        .into_iter()
        .chain(self.proxies.iter_mut().map(|named| &mut named.proxy));
        for proxy in proxies {
            proxy.endpoint.clear();
            proxy.http = Default::default();
            proxy.grpc = Default::default();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    #[test]
    fn an_edge_keeps_no_secret_of_the_core() {
        let mut config = Config::default();
        config.http_api.key = Secret::new("api-key");
        config.broker.postgres.dsn = Secret::new("postgres://user:password@db/app");
        config.client.proxy.connect.enabled = true;
        config.client.proxy.connect.proxy.endpoint = "https://backend/connect".into();
        config.client.proxy.connect.proxy.http.static_headers =
            [("authorization".to_owned(), Secret::new("Bearer s3cret"))].into();
        config.client.token.hmac_secret_key = Secret::new("token-key");
        let edge = config.clone().for_role(Role::Edge);
        assert!(edge.http_api.key.is_empty());
        assert!(edge.broker.postgres.dsn.is_empty());
        assert!(edge.client.proxy.connect.proxy.endpoint.is_empty());
        assert!(
            edge.client
                .proxy
                .connect
                .proxy
                .http
                .static_headers
                .is_empty()
        );
        // What the edge uses stays: token keys, which proxies are on, their timeouts.
        assert_eq!(edge.client.token.hmac_secret_key.expose(), "token-key");
        assert!(edge.client.proxy.connect.enabled);
        assert_eq!(
            edge.client.proxy.connect.proxy.timeout,
            config.client.proxy.connect.proxy.timeout
        );
        assert_eq!(config.clone().for_role(Role::Core), config);
    }
}
