//! The reconnect storm's verdict per client: did the recovering subscribe return exactly the
//! publications its channel got while the client was away — every offset from its last one
//! plus one up to the stream top, in order, once, under the same epoch — with
//! `recovered: true`, and nothing else afterwards?

use crate::histogram::Histogram;
use crate::ledger::Ledger;
use crate::storm_client::ClientOutcome;
use std::collections::BTreeMap;

/// Totals over all clients.
#[derive(Debug, Default)]
pub struct StormCheck {
    pub clients: u64,
    pub recovered_true: u64,
    pub recovered_false: u64,
    /// Replies without `was_recovering` (the server did not treat it as a recovery).
    pub not_recovering: u64,
    /// Clients that got exactly their missed publications.
    pub exact: u64,
    /// Publications expected over all clients, and how many of them arrived.
    pub expected: u64,
    pub received: u64,
    /// Expected publications that did not arrive.
    pub missing: u64,
    /// Arrivals that were not expected: duplicates, offsets outside the gap.
    pub extra: u64,
    /// Clients whose publications were not in ascending offset order.
    pub out_of_order: u64,
    /// Clients whose epoch changed between the drop and the recovery.
    pub epoch_changed: u64,
    /// Publications received before the drop (nothing was published then).
    pub before_drop: u64,
    /// Of `received`, those that came as pushes after the subscribe reply.
    pub after_reply: u64,
    /// Connections that ended on their own: before the drop, after the recovery.
    pub lost_before_drop: u64,
    pub lost_after: u64,
    /// Failed reconnects or resubscribes by reason.
    pub reconnect_errors: BTreeMap<String, u64>,
    /// The first client that was not exact, described.
    pub first_problem: Option<String>,
    /// Storm start → connected, and → recovering subscribe reply, per client (µs).
    pub connected: Histogram,
    pub recovered: Histogram,
}

impl StormCheck {
    pub fn is_clean(&self) -> bool {
        self.exact == self.clients
            && self.recovered_false == 0
            && self.lost_after == 0
            && self.lost_before_drop == 0
            && self.before_drop == 0
    }
}

/// Checks each client against the positions the API returned for its channel.
pub fn check(outcomes: &[ClientOutcome], published: &Ledger) -> StormCheck {
    let mut check = StormCheck::default();
    for (k, client) in outcomes.iter().enumerate() {
        check.clients += 1;
        check.before_drop += client.before_drop.len() as u64;
        check.lost_before_drop += u64::from(client.lost_before_drop.is_some());
        check.lost_after += u64::from(client.lost_after.is_some());
        if let Some(error) = client
            .reconnect_error
            .as_ref()
            .or(client.setup_error.as_ref())
        {
            *check.reconnect_errors.entry(error.clone()).or_default() += 1;
            note(&mut check, k, error);
            continue;
        }
        let micros = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(after) = client.connected_after {
            check.connected.record(micros(after));
        }
        if let Some(after) = client.recovered_after {
            check.recovered.record(micros(after));
        }
        check.not_recovering += u64::from(!client.was_recovering);
        if client.recovered {
            check.recovered_true += 1;
        } else {
            check.recovered_false += 1;
        }
        let (start, epoch) = client.position.clone().unwrap_or_default();
        let top = published.top(client.channel).unwrap_or(start);
        let expected: Vec<u64> = (start + 1..=top).collect();
        let got: Vec<u64> = client
            .recovered_offsets
            .iter()
            .chain(&client.live_after)
            .copied()
            .collect();
        check.expected += expected.len() as u64;
        check.received += got.len() as u64;
        check.after_reply += client.live_after.len() as u64;
        let arrived = expected
            .iter()
            .filter(|offset| got.contains(offset))
            .count() as u64;
        let missing = expected.len() as u64 - arrived;
        check.missing += missing;
        check.extra += got.len() as u64 - arrived.min(got.len() as u64);
        let ordered = got.windows(2).all(|w| w[0] < w[1]);
        check.out_of_order += u64::from(!ordered);
        let same_epoch = client.epoch_after == epoch;
        check.epoch_changed += u64::from(!same_epoch);
        if got == expected && same_epoch && client.recovered && client.was_recovering {
            check.exact += 1;
        } else {
            let problem = format!(
                "recovered {} (was_recovering {}), epoch {:?} → {:?}, got offsets {:?}, \
                 expected {}..={top}",
                client.recovered,
                client.was_recovering,
                epoch,
                client.epoch_after,
                got,
                start + 1
            );
            note(&mut check, k, &problem);
        }
    }
    check
}

fn note(check: &mut StormCheck, client: usize, problem: &str) {
    check
        .first_problem
        .get_or_insert_with(|| format!("client {client}: {problem}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Position;

    fn ledger(top: u64) -> Ledger {
        let mut ledger = Ledger::new(1);
        for offset in 1..=top {
            ledger.record(
                0,
                Position {
                    offset,
                    epoch: "e".into(),
                },
            );
        }
        ledger
    }

    fn client(recovered: &[u64], live: &[u64]) -> ClientOutcome {
        ClientOutcome {
            position: Some((0, "e".into())),
            was_recovering: true,
            recovered: true,
            epoch_after: "e".into(),
            recovered_offsets: recovered.to_vec(),
            live_after: live.to_vec(),
            ..ClientOutcome::default()
        }
    }

    #[test]
    fn exactly_the_missed_publications_pass() {
        let check = check(
            &[client(&[1, 2, 3], &[]), client(&[1, 2], &[3])],
            &ledger(3),
        );
        assert_eq!((check.exact, check.missing, check.extra), (2, 0, 0));
        assert_eq!(
            (check.expected, check.received, check.after_reply),
            (6, 6, 1)
        );
        assert!(check.is_clean());
    }

    #[test]
    fn gaps_duplicates_disorder_and_unrecovered_fail() {
        let mut unrecovered = client(&[], &[]);
        unrecovered.recovered = false;
        let outcomes = [
            client(&[1, 3], &[]),
            client(&[1, 2, 3], &[3]),
            client(&[2, 1, 3], &[]),
            unrecovered,
        ];
        let check = check(&outcomes, &ledger(3));
        assert_eq!(check.exact, 0);
        assert_eq!(check.missing, 1 + 3);
        assert_eq!(check.extra, 1);
        assert_eq!(check.out_of_order, 2);
        assert_eq!((check.recovered_true, check.recovered_false), (3, 1));
        assert!(!check.is_clean());
        assert!(check.first_problem.unwrap().starts_with("client 0:"));
    }
}
