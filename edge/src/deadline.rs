//! How long the edge waits for each kind of answer from its core. Every request over the link
//! has a deadline (the link enforces it and cancels the request); a request that misses it is
//! answered to the client as error 100, temporary (`RequestError` → `Failure::Internal`, in
//! [`failure_of`]).

use spindle_hub::config::Config;
use spindle_hub::outcome::Failure;
use spindle_mesh::RequestError;
use std::time::Duration;

/// History, presence, presence stats, publish and interest: the core's own work, one broker
/// round trip or a few.
pub(crate) const CORE: Duration = Duration::from_secs(10);
/// A JWK set fetch: the core's own fetch timeout (5 s) plus room for the link.
pub(crate) const JWKS: Duration = Duration::from_secs(6);
/// An `/emulation` frame the core forwards to another node: above the core's own wait for
/// that node, so the core's verdict normally arrives first.
pub(crate) const EMULATION: Duration = Duration::from_secs(5);
/// What a proxy call may add to the slowest configured proxy's own timeout: the link both
/// ways and the core's work around the call.
const PROXY_MARGIN: Duration = Duration::from_secs(1);

/// The deadline of a proxy request: the longest `timeout` of any configured proxy plus a
/// margin, so the core's answer (the backend's, or its timeout error) arrives first.
pub(crate) fn proxy(config: &Config) -> Duration {
    config
        .all_proxies()
        .map(|proxy| proxy.timeout.as_std())
        .max()
        .unwrap_or_default()
        + PROXY_MARGIN
}

/// What a client sees when the core could not be asked: error 100 (internal, temporary),
/// whether the link is gone or the answer is late.
pub(crate) fn failure_of(error: RequestError) -> Failure {
    match error {
        RequestError::Closed | RequestError::Timeout(_) => Failure::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_request_outlives_the_slowest_proxy() {
        let mut config = Config::default();
        assert_eq!(
            proxy(&config),
            Duration::from_secs(2),
            "1 s default + margin"
        );
        config.channel.proxy.subscribe.timeout = spindle_hub::config::Duration::from_secs(7);
        assert_eq!(proxy(&config), Duration::from_secs(8));
    }

    #[test]
    fn a_lost_or_late_answer_is_a_temporary_internal_error() {
        for error in [RequestError::Closed, RequestError::Timeout(CORE)] {
            assert_eq!(failure_of(error), Failure::Internal);
        }
    }
}
