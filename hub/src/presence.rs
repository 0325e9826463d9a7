//! Channel presence sets (docs/protocol.md §2.9): who is subscribed where, keyed by client id, each
//! entry living `ttl` after its last add or refresh.
//!
//! Pure: time is passed in. Expiry needs no task per entry: one index orders every entry by its
//! deadline, every operation first drops what expired at its `now`, and [`Presence::sweep`]
//! does the same for the periodic pass.
//!
//! Counting users: `num_users` is the number of distinct user ids among a channel's clients,
//! where the anonymous user (empty id) counts as one user however many anonymous clients there
//! are (as in Centrifugo).

use spindle_proto::client::ClientInfo;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `presence_stats` of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PresenceStats {
    pub num_clients: u32,
    pub num_users: u32,
}

#[derive(Debug)]
struct Member {
    info: ClientInfo,
    /// This entry's key in the expiry index.
    deadline: (Instant, u64),
}

#[derive(Debug, Default)]
struct ChannelSet {
    members: HashMap<String, Member>,
    /// User id → clients of that user in the channel.
    users: HashMap<String, u32>,
}

impl ChannelSet {
    fn insert_user(&mut self, user: &str) {
        match self.users.get_mut(user) {
            Some(count) => *count += 1,
            None => {
                self.users.insert(user.to_owned(), 1);
            }
        }
    }

    fn remove_user(&mut self, user: &str) {
        if let Some(count) = self.users.get_mut(user) {
            *count -= 1;
            if *count == 0 {
                self.users.remove(user);
            }
        }
    }
}

/// The presence sets of many channels, bounded by a total number of entries.
#[derive(Debug)]
pub struct Presence {
    ttl: Duration,
    max_entries: usize,
    channels: HashMap<String, ChannelSet>,
    /// (deadline, sequence) → (channel, client id), one per entry.
    expiry: BTreeMap<(Instant, u64), (Arc<str>, Arc<str>)>,
    next_seq: u64,
}

impl Presence {
    /// Entries live `ttl` after their last add or refresh. At most `max_entries` over all
    /// channels: past it, adding evicts the entry closest to expiring.
    pub fn new(ttl: Duration, max_entries: usize) -> Presence {
        Presence {
            ttl,
            max_entries: max_entries.max(1),
            channels: HashMap::new(),
            expiry: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// Adds or replaces the entry of `info.client` in `channel`, alive until `now + ttl`.
    /// True when the client was not present before.
    pub fn add(&mut self, channel: &str, info: ClientInfo, now: Instant) -> bool {
        self.sweep(now);
        let deadline = self.next_deadline(now);
        let client: Arc<str> = Arc::from(info.client.as_str());
        if let Some(set) = self.channels.get_mut(channel)
            && let Some(member) = set.members.get_mut(info.client.as_str())
        {
            self.expiry.remove(&member.deadline);
            let old_user = std::mem::replace(&mut member.info, info);
            member.deadline = deadline;
            let new_user = member.info.user.clone();
            if old_user.user != new_user {
                set.remove_user(&old_user.user);
                set.insert_user(&new_user);
            }
            self.expiry.insert(deadline, (Arc::from(channel), client));
            return false;
        }
        while self.expiry.len() >= self.max_entries {
            if let Some((_, (channel, client))) = self.expiry.pop_first() {
                self.forget(&channel, &client);
            }
        }
        let set = self.channels.entry(channel.to_owned()).or_default();
        set.insert_user(&info.user);
        set.members
            .insert(info.client.clone(), Member { info, deadline });
        self.expiry.insert(deadline, (Arc::from(channel), client));
        true
    }

    /// Extends the entry of `client` in `channel` to `now + ttl`. False when there is none
    /// (never added, left, or expired): a refresh does not bring an entry back.
    pub fn refresh(&mut self, channel: &str, client: &str, now: Instant) -> bool {
        self.sweep(now);
        let deadline = self.next_deadline(now);
        let Some(member) = self
            .channels
            .get_mut(channel)
            .and_then(|set| set.members.get_mut(client))
        else {
            return false;
        };
        if let Some(names) = self.expiry.remove(&member.deadline) {
            self.expiry.insert(deadline, names);
        }
        member.deadline = deadline;
        true
    }

    /// Removes the entry of `client` in `channel`; returns its info when it was present.
    pub fn remove(&mut self, channel: &str, client: &str, now: Instant) -> Option<ClientInfo> {
        self.sweep(now);
        self.forget(channel, client)
    }

    /// The live entries of `channel`: client id → info.
    pub fn clients(&mut self, channel: &str, now: Instant) -> BTreeMap<String, ClientInfo> {
        self.sweep(now);
        self.channels
            .get(channel)
            .map(|set| {
                set.members
                    .iter()
                    .map(|(client, member)| (client.clone(), member.info.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Clients and distinct users (anonymous counting as one) of `channel`.
    pub fn stats(&mut self, channel: &str, now: Instant) -> PresenceStats {
        self.sweep(now);
        self.channels
            .get(channel)
            .map(|set| PresenceStats {
                num_clients: u32::try_from(set.members.len()).unwrap_or(u32::MAX),
                num_users: u32::try_from(set.users.len()).unwrap_or(u32::MAX),
            })
            .unwrap_or_default()
    }

    /// Drops every entry expired at `now`; returns how many.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(entry) = self.expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (channel, client) = entry.remove();
            if self.forget(&channel, &client).is_some() {
                expired += 1;
            }
        }
        expired
    }

    /// Entries over all channels (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.expiry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.expiry.is_empty()
    }

    fn next_deadline(&mut self, now: Instant) -> (Instant, u64) {
        self.next_seq += 1;
        (now + self.ttl, self.next_seq)
    }

    /// Removes an entry and its index key; drops the channel's set when it empties.
    fn forget(&mut self, channel: &str, client: &str) -> Option<ClientInfo> {
        let Entry::Occupied(mut set) = self.channels.entry(channel.to_owned()) else {
            return None;
        };
        let member = set.get_mut().members.remove(client)?;
        self.expiry.remove(&member.deadline);
        set.get_mut().remove_user(&member.info.user);
        if set.get().members.is_empty() {
            set.remove();
        }
        Some(member.info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);
    const SECOND: Duration = Duration::from_secs(1);

    fn info(user: &str, client: &str) -> ClientInfo {
        ClientInfo {
            user: user.into(),
            client: client.into(),
            conn_info: Default::default(),
            chan_info: Default::default(),
        }
    }

    fn stats(clients: u32, users: u32) -> PresenceStats {
        PresenceStats {
            num_clients: clients,
            num_users: users,
        }
    }

    #[test]
    fn clients_and_users_with_anonymous_as_one_user() {
        let t0 = Instant::now();
        let mut presence = Presence::new(TTL, 100);
        assert!(presence.add("ch", info("u1", "c1"), t0));
        assert!(presence.add("ch", info("u1", "c2"), t0));
        assert!(presence.add("ch", info("u2", "c3"), t0));
        assert!(presence.add("ch", info("", "c4"), t0));
        assert!(presence.add("ch", info("", "c5"), t0));
        assert!(presence.add("other", info("u9", "c9"), t0));
        assert_eq!(presence.stats("ch", t0), stats(5, 3));
        assert_eq!(presence.stats("other", t0), stats(1, 1));
        assert_eq!(presence.stats("none", t0), stats(0, 0));
        let clients = presence.clients("ch", t0);
        assert_eq!(
            clients.keys().map(String::as_str).collect::<Vec<_>>(),
            ["c1", "c2", "c3", "c4", "c5"]
        );
        assert_eq!(clients["c3"], info("u2", "c3"));

        // Adding again replaces; the user may change.
        assert!(!presence.add("ch", info("u3", "c3"), t0));
        assert_eq!(presence.stats("ch", t0), stats(5, 3));
        assert_eq!(presence.remove("ch", "c1", t0), Some(info("u1", "c1")));
        assert_eq!(presence.remove("ch", "c1", t0), None);
        assert_eq!(presence.stats("ch", t0), stats(4, 3));
        assert_eq!(presence.remove("ch", "c2", t0), Some(info("u1", "c2")));
        assert_eq!(presence.stats("ch", t0), stats(3, 2));
        for client in ["c3", "c4", "c5"] {
            presence.remove("ch", client, t0);
        }
        assert_eq!(presence.stats("ch", t0), stats(0, 0));
        assert_eq!(presence.len(), 1);
    }

    #[test]
    fn entries_expire_unless_refreshed() {
        let t0 = Instant::now();
        let mut presence = Presence::new(TTL, 100);
        presence.add("ch", info("u1", "c1"), t0);
        presence.add("ch", info("u2", "c2"), t0 + SECOND * 10);
        assert!(presence.refresh("ch", "c1", t0 + SECOND * 30));
        assert!(!presence.refresh("ch", "nobody", t0 + SECOND * 30));
        assert!(!presence.refresh("elsewhere", "c1", t0 + SECOND * 30));
        // c2 expires at 70 s, c1 (refreshed at 30 s) at 90 s.
        assert_eq!(presence.stats("ch", t0 + SECOND * 69), stats(2, 2));
        assert_eq!(presence.stats("ch", t0 + SECOND * 70), stats(1, 1));
        assert_eq!(presence.clients("ch", t0 + SECOND * 89).len(), 1);
        assert!(presence.clients("ch", t0 + SECOND * 90).is_empty());
        // An expired entry is not brought back by a refresh.
        assert!(!presence.refresh("ch", "c1", t0 + SECOND * 91));
        assert_eq!(presence.remove("ch", "c1", t0 + SECOND * 91), None);
        assert!(presence.is_empty());
    }

    #[test]
    fn sweep_counts_and_add_refreshes_the_deadline() {
        let t0 = Instant::now();
        let mut presence = Presence::new(TTL, 100);
        presence.add("a", info("u", "c1"), t0);
        presence.add("b", info("u", "c1"), t0);
        presence.add("a", info("u", "c2"), t0 + SECOND * 20);
        presence.add("a", info("u", "c1"), t0 + SECOND * 30);
        assert_eq!(presence.sweep(t0 + SECOND * 60), 1);
        assert_eq!(presence.stats("b", t0 + SECOND * 60), stats(0, 0));
        assert_eq!(presence.sweep(t0 + SECOND * 80), 1);
        assert_eq!(presence.sweep(t0 + SECOND * 90), 1);
        assert!(presence.is_empty());
    }

    #[test]
    fn the_entry_cap_evicts_the_one_closest_to_expiring() {
        let t0 = Instant::now();
        let mut presence = Presence::new(TTL, 2);
        presence.add("ch", info("u1", "c1"), t0);
        presence.add("ch", info("u2", "c2"), t0 + SECOND);
        presence.refresh("ch", "c1", t0 + SECOND * 2);
        presence.add("ch", info("u3", "c3"), t0 + SECOND * 3);
        let clients = presence.clients("ch", t0 + SECOND * 3);
        assert_eq!(
            clients.keys().map(String::as_str).collect::<Vec<_>>(),
            ["c1", "c3"]
        );
        assert_eq!(presence.len(), 2);
    }
}
