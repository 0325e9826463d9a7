//! Many connections at once: each is a task that connects (at most `concurrency` in setup at
//! a time, so the server's accept backlog is not flooded), reports readiness, then runs its
//! counting loop until [`Swarm::stop`].

use crate::client::{Shared, Subscriber, Tally, token};
use crate::wire::Wire;
use anyhow::{Result, bail};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

/// What the connections of a swarm do.
#[derive(Debug, Clone)]
pub struct SwarmPlan {
    /// Connection `k` connects to `ws_urls[k % ws_urls.len()]`.
    pub ws_urls: Arc<[String]>,
    pub hmac_secret: String,
    pub wire: Wire,
    pub connections: usize,
    /// Connection `k` subscribes to `channels[k % channels.len()]`.
    pub channels: Arc<[String]>,
    /// Publications numbered below this are tracked per connection.
    pub expected: u64,
    pub concurrency: usize,
}

/// Connected connections, running.
#[derive(Debug)]
pub struct Swarm {
    tasks: Vec<JoinHandle<Tally>>,
    stop: watch::Sender<bool>,
    /// Time from the first connection attempt to the last subscribe reply.
    pub setup_time: Duration,
}

impl Swarm {
    /// Connects every connection of `plan`; fails (after stopping the rest) if any fails.
    pub async fn connect(plan: &SwarmPlan, shared: Arc<Shared>) -> Result<Swarm> {
        let started = Instant::now();
        let (stop, stop_rx) = watch::channel(false);
        let gate = Arc::new(Semaphore::new(plan.concurrency.max(1)));
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<(), String>>();
        let mut tasks = Vec::with_capacity(plan.connections);
        for k in 0..plan.connections {
            let plan = plan.clone();
            let (gate, ready, shared, stop_rx) = (
                gate.clone(),
                ready_tx.clone(),
                shared.clone(),
                stop_rx.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let setup = async {
                    let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
                    // The peers' wires take no token.
                    let token = match plan.wire {
                        Wire::Centrifugo(_) => token(&format!("bench-{k}"), &plan.hmac_secret)
                            .map_err(|e| format!("{e:#}"))?,
                        Wire::Plain | Wire::Nats => String::new(),
                    };
                    let channel = &plan.channels[k % plan.channels.len()];
                    let ws_url = &plan.ws_urls[k % plan.ws_urls.len()];
                    Subscriber::open(ws_url, plan.wire, &token, channel)
                        .await
                        .map_err(|e| format!("connection {k}: {e:#}"))
                };
                match setup.await {
                    Ok(subscriber) => {
                        let _ = ready.send(Ok(()));
                        drop(ready);
                        subscriber.run(&shared, plan.expected, stop_rx).await
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error.clone()));
                        Tally {
                            ended: Some(error),
                            ..Tally::default()
                        }
                    }
                }
            }));
        }
        drop(ready_tx);
        let mut swarm = Swarm {
            tasks,
            stop,
            setup_time: Duration::ZERO,
        };
        let step = (plan.connections / 10).max(1000);
        let mut ready: usize = 0;
        while ready < plan.connections {
            let Some(result) = ready_rx.recv().await else {
                bail!("connection tasks ended before reporting");
            };
            if let Err(error) = result {
                swarm.stop().await;
                bail!(
                    "{ready} of {} connections were set up, then: {error}",
                    plan.connections
                );
            }
            ready += 1;
            if ready.is_multiple_of(step) && ready < plan.connections {
                eprintln!(
                    "  {ready}/{} connected ({:.1} s)",
                    plan.connections,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        swarm.setup_time = started.elapsed();
        Ok(swarm)
    }

    /// Tells every connection to stop and collects what each saw (in connection order).
    pub async fn stop(self) -> Vec<Tally> {
        let _ = self.stop.send(true);
        let mut tallies = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            tallies.push(task.await.unwrap_or_else(|e| Tally {
                ended: Some(format!("task failed: {e}")),
                ..Tally::default()
            }));
        }
        tallies
    }
}
