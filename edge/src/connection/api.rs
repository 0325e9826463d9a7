//! What reaches a connection from outside its socket: API control commands (matched and applied
//! with the session) and the session's timers.

use super::{Connection, ping_bytes};
use crate::clock::SystemNow;
use crate::control::disconnect_of;
use spindle_hub::codes::{Disconnect, Unsubscribe};
use spindle_hub::outcome::Outcome;
use spindle_hub::session::{Now, TimerAction};
use spindle_mesh::mesh;
use spindle_proto::client;

impl Connection {
    pub(super) async fn on_control(&mut self, control: mesh::Control) {
        use mesh::control::Kind;
        if !self
            .session
            .matches(&control.user, &control.client, &control.session)
        {
            return;
        }
        let now = Now::system();
        match control.kind {
            Some(Kind::Disconnect(command)) => {
                let whitelisted = command.whitelist.iter().any(|c| c == self.client.as_str());
                if !whitelisted {
                    self.close(disconnect_of(&command));
                }
            }
            Some(Kind::Unsubscribe(command)) => {
                let had = self.unregister(&command.channel).await;
                if had {
                    let unsubscribe = match command.code {
                        2500 => Unsubscribe::INSUFFICIENT_STATE,
                        _ => Unsubscribe::SERVER,
                    };
                    self.push(client::Push {
                        channel: command.channel,
                        unsubscribe: Some(unsubscribe.to_push()),
                        ..Default::default()
                    });
                }
            }
            Some(Kind::Subscribe(command)) => {
                let grant = match self
                    .session
                    .api_subscribe(&self.shared.rules, &command, now)
                {
                    Ok(grant) => grant,
                    Err(failure) => {
                        tracing::info!(client = %self.client, channel = %command.channel, ?failure, "API subscribe refused");
                        // A refusal that is a disconnect (3505: the client is at its channel
                        // limit, as centrifuge's Client.Subscribe) closes the connection.
                        if let Outcome::Disconnect(disconnect) = failure.outcome() {
                            self.close(disconnect);
                        }
                        return;
                    }
                };
                let sub = match self.attach(&grant, None).await {
                    Ok(sub) => sub,
                    Err(_) => return self.close(Disconnect::SERVER_ERROR),
                };
                let result = match self.position(&grant, &sub).await {
                    Ok(result) => result,
                    Err(refusal) => {
                        tracing::info!(client = %self.client, channel = %grant.channel, ?refusal, "API subscribe not positioned");
                        self.detach(&sub).await;
                        return;
                    }
                };
                self.commit(&grant, &sub);
                if !self.presence_stored(&grant.channel).await {
                    return;
                }
                self.push(client::Push {
                    channel: grant.channel.clone(),
                    subscribe: Some(client::Subscribe {
                        recoverable: result.recoverable,
                        epoch: result.epoch.clone(),
                        offset: result.offset,
                        positioned: result.positioned,
                        data: result.data.clone(),
                    }),
                    ..Default::default()
                });
                // Recovered publications (API `recover_since`) follow the subscribe push.
                for publication in result.publications {
                    self.push(client::Push {
                        channel: grant.channel.clone(),
                        r#pub: Some(publication),
                        ..Default::default()
                    });
                }
                self.activate(&sub).await;
            }
            Some(Kind::Refresh(command)) => {
                match self.session.api_refresh(
                    command.expired,
                    command.expire_at,
                    &command.info,
                    now,
                ) {
                    Ok(refresh) => self.push(client::Push {
                        refresh: Some(refresh),
                        ..Default::default()
                    }),
                    Err(disconnect) => self.close(disconnect),
                }
            }
            None => {}
        }
    }

    pub(super) async fn on_timer(&mut self) {
        self.expire_tracks();
        let now = Now::system();
        if let Some(deadline) = self.read_deadline()
            && deadline <= now.mono
        {
            self.close(Disconnect::NO_PONG);
            return;
        }
        for action in self.session.on_timer(now) {
            match action {
                TimerAction::SendPing if self.setup.native_ping => {
                    self.outbox.ping();
                    // The session's pong rule is for application pings; native pongs are
                    // checked by the read deadline instead.
                    let _ = self.session.on_pong(now);
                }
                TimerAction::SendPing => {
                    self.handle.push(ping_bytes(self.setup.format));
                    if self.setup.uni.is_some() {
                        // Uni clients never answer pings.
                        let _ = self.session.on_pong(now);
                    }
                }
                TimerAction::Disconnect(disconnect) => self.close(disconnect),
                TimerAction::Unsubscribe(channel, unsubscribe) => {
                    self.unregister(&channel).await;
                    self.push(client::Push {
                        channel,
                        unsubscribe: Some(unsubscribe.to_push()),
                        ..Default::default()
                    });
                }
                TimerAction::RefreshProxy(call) => self.refresh_by_proxy(&call).await,
                TimerAction::SubRefreshProxy(channel, call) => {
                    self.sub_refresh_by_proxy(channel, &call).await;
                }
            }
        }
    }
}
