//! A seeded UDP impairment proxy: what `tc netem` would do to the edge↔core mesh, in-process
//! and controllable from the test at run time.
//!
//! A test starts a [`Proxy`] in front of a core's mesh address ([`Proxy::start`]) and gives the
//! edge [`Proxy::addr`] as that core's address. Every datagram an edge sends ("up", edge→core)
//! leaves the proxy from a socket of its own, one per edge source address, so the core sees one
//! peer per edge; whatever the core sends back to that socket ("down", core→edge) goes back to
//! the edge from the proxy's listening address. QUIC therefore runs end to end through it.
//!
//! Model, per direction ([`Direction`]), each datagram in turn:
//! 1. a blackhole ([`Control::blackhole`], both directions) or a stall of this direction
//!    ([`Control::stall`], [`Control::stall_for`]) drops it;
//! 2. else it is lost with probability [`Link::loss`];
//! 3. else it waits [`Link::delay`] plus a uniform share of [`Link::jitter`], never leaving
//!    before an earlier datagram of the same client and direction (jitter alone does not
//!    reorder, as on most real paths);
//! 4. with probability [`Link::reorder`] it waits [`Link::reorder_delay`] more, outside that
//!    order, so later datagrams overtake it;
//! 5. with probability [`Link::duplicate`] a second copy leaves at the same time.
//!
//! Settings ([`Impairments`]) apply to datagrams as they arrive; datagrams already waiting keep
//! the fate they were given (they are "on the wire"). [`Control::rebind`] gives every edge a new
//! upstream socket, as a NAT rebinding would: the core sees the edge's traffic come from a new
//! port and what it still sends to the old one is lost.
//!
//! Determinism: each client (in order of first contact) has one random stream per direction,
//! seeded from the proxy's seed, the client's index and the direction, and every datagram draws
//! the same four numbers from it whatever happens to it. So the fate of the n-th datagram of a
//! client in a direction depends only on the seed and on the settings in force when it arrives,
//! never on timing or on the other direction. When it actually leaves is up to the clock.
//!
//! Bounds: at most [`MAX_IN_FLIGHT`] delayed datagrams per direction (more are dropped and
//! counted as [`Counters::overflowed`]), at most [`MAX_CLIENTS`] clients, added delays capped
//! at [`MAX_DELAY`]. Send and receive errors never stop the proxy: a send error is counted, a
//! receive error skipped. Everything stops when the [`Proxy`] is dropped.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Delayed datagrams held per direction, at most; beyond that they are dropped and counted.
pub const MAX_IN_FLIGHT: usize = 65_536;

/// Distinct client source addresses served, at most: each costs a socket and a task.
pub const MAX_CLIENTS: usize = 1_024;

/// The longest delay a datagram is given by delay and jitter, and again by reordering. Longer
/// is as good as lost for any test, and the cap keeps clock arithmetic from overflowing.
pub const MAX_DELAY: Duration = Duration::from_hours(1);

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Which way a datagram travels through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From a client (the edge) to the upstream (the core).
    Up,
    /// From the upstream (the core) back to a client (the edge).
    Down,
}

impl Direction {
    const fn index(self) -> usize {
        match self {
            Direction::Up => 0,
            Direction::Down => 1,
        }
    }
}

/// The impairments of one direction. `Link::default()` is a clean link.
///
/// Probabilities are compared with a uniform draw in `[0, 1)`: 0 (or NaN) never, 1 always.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Added to every datagram. Default: zero.
    pub delay: Duration,
    /// Up to this much more, uniformly at random. Default: zero.
    pub jitter: Duration,
    /// Probability that a datagram is dropped. Default: 0.
    pub loss: f64,
    /// Probability that a datagram is sent twice. Default: 0.
    pub duplicate: f64,
    /// Probability that a datagram is held back by [`Link::reorder_delay`] so that later ones
    /// overtake it. Default: 0.
    pub reorder: f64,
    /// How long a reordered datagram is held back, on top of its delay. Default: 20 ms.
    pub reorder_delay: Duration,
}

impl Default for Link {
    fn default() -> Link {
        Link::CLEAN
    }
}

impl Link {
    /// No impairment at all (the default).
    pub const CLEAN: Link = Link {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_delay: Duration::from_millis(20),
    };

    /// This link with `delay` added to every datagram.
    #[must_use]
    pub fn with_delay(self, delay: Duration) -> Link {
        Link { delay, ..self }
    }

    /// This link with up to `jitter` more delay, uniformly at random.
    #[must_use]
    pub fn with_jitter(self, jitter: Duration) -> Link {
        Link { jitter, ..self }
    }

    /// This link losing each datagram with probability `loss`.
    #[must_use]
    pub fn with_loss(self, loss: f64) -> Link {
        Link { loss, ..self }
    }

    /// This link sending each datagram twice with probability `duplicate`.
    #[must_use]
    pub fn with_duplicate(self, duplicate: f64) -> Link {
        Link { duplicate, ..self }
    }

    /// This link holding each datagram back by `delay` with probability `reorder`.
    #[must_use]
    pub fn with_reorder(self, reorder: f64, delay: Duration) -> Link {
        Link {
            reorder,
            reorder_delay: delay,
            ..self
        }
    }
}

/// The impairments of both directions. `Impairments::default()` is clean both ways.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Impairments {
    /// Client (edge) → upstream (core).
    pub up: Link,
    /// Upstream (core) → client (edge).
    pub down: Link,
}

impl Impairments {
    /// The same `link` both ways.
    pub fn symmetric(link: Link) -> Impairments {
        Impairments {
            up: link,
            down: link,
        }
    }

    /// A round trip of `rtt` (half each way) and `loss` in each direction.
    pub fn rtt_loss(rtt: Duration, loss: f64) -> Impairments {
        Impairments::symmetric(Link::CLEAN.with_delay(rtt / 2).with_loss(loss))
    }

    /// A long-distance path: 80 ms round trip, up to 5 ms jitter and 0.5 % loss each way.
    pub fn wan() -> Impairments {
        Impairments::symmetric(
            Link::CLEAN
                .with_delay(Duration::from_millis(40))
                .with_jitter(Duration::from_millis(5))
                .with_loss(0.005),
        )
    }

    /// A bad mobile path: 200 ms round trip, up to 50 ms jitter, 3 % loss, 1 % duplicates and
    /// 2 % of datagrams reordered (held 30 ms) each way.
    pub fn mobile() -> Impairments {
        Impairments::symmetric(
            Link::CLEAN
                .with_delay(Duration::from_millis(100))
                .with_jitter(Duration::from_millis(50))
                .with_loss(0.03)
                .with_duplicate(0.01)
                .with_reorder(0.02, Duration::from_millis(30)),
        )
    }

    /// The link of `direction`.
    pub fn link(&self, direction: Direction) -> Link {
        match direction {
            Direction::Up => self.up,
            Direction::Down => self.down,
        }
    }

    fn link_mut(&mut self, direction: Direction) -> &mut Link {
        match direction {
            Direction::Up => &mut self.up,
            Direction::Down => &mut self.down,
        }
    }
}

/// What happened to the datagrams of one direction so far (all clients together).
///
/// Once nothing is waiting: `received + duplicated == forwarded + dropped() + send_errors`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams whose fate is decided. Counted last, after the drop counters and after an
    /// immediate send, so a test that waits for `received` sees the rest up to date.
    pub received: u64,
    /// Datagrams (copies included) handed to a socket without error.
    pub forwarded: u64,
    /// Dropped by [`Link::loss`].
    pub lost: u64,
    /// Dropped by [`Control::blackhole`].
    pub blackholed: u64,
    /// Dropped by [`Control::stall`] or [`Control::stall_for`].
    pub stalled: u64,
    /// Dropped because [`MAX_IN_FLIGHT`] datagrams were already waiting, or (up) because
    /// [`MAX_CLIENTS`] clients were already served.
    pub overflowed: u64,
    /// Datagrams sent twice.
    pub duplicated: u64,
    /// Datagrams held back by [`Link::reorder_delay`].
    pub reordered: u64,
    /// Sends that failed (including binding a new client's upstream socket).
    pub send_errors: u64,
}

impl Counters {
    /// Every datagram dropped on purpose: loss, blackhole, stall and overflow.
    pub fn dropped(&self) -> u64 {
        self.lost + self.blackholed + self.stalled + self.overflowed
    }
}

/// A running proxy; stops (every task aborted, every socket closed) when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    control: Control,
    /// The front task (which owns the per-client tasks) and one timer task per direction.
    tasks: JoinSet<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Dropping a set aborts its tasks too; saying it keeps the lifecycle visible. The
        // front task's own set of per-client tasks goes when the front task does.
        self.tasks.abort_all();
    }
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream`, without impairments until told.
    ///
    /// # Errors
    ///
    /// Binding the listening socket failed.
    pub async fn start(upstream: SocketAddr, seed: u64) -> io::Result<Proxy> {
        Proxy::start_with(upstream, seed, Impairments::default()).await
    }

    /// Like [`Proxy::start`], impaired by `impairments` from the first datagram.
    ///
    /// # Errors
    ///
    /// Binding the listening socket failed.
    pub async fn start_with(
        upstream: SocketAddr,
        seed: u64,
        impairments: Impairments,
    ) -> io::Result<Proxy> {
        Proxy::start_bounded(upstream, seed, impairments, MAX_IN_FLIGHT).await
    }

    async fn start_bounded(
        upstream: SocketAddr,
        seed: u64,
        impairments: Impairments,
        max_in_flight: usize,
    ) -> io::Result<Proxy> {
        let front = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?);
        let addr = front.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                impairments,
                blackhole: Gate::Open,
                stall: [Gate::Open; 2],
            }),
            counters: Default::default(),
        });
        let (commands, command_rx) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        let up = Timers::start(&mut tasks, &shared, Direction::Up, max_in_flight);
        let down = Timers::start(&mut tasks, &shared, Direction::Down, max_in_flight);
        let front_task = Front {
            socket: front,
            upstream,
            seed,
            shared: Arc::clone(&shared),
            up,
            down,
            clients: HashMap::new(),
            tasks: JoinSet::new(),
        };
        tasks.spawn(front_task.run(command_rx));
        Ok(Proxy {
            addr,
            upstream,
            control: Control { shared, commands },
            tasks,
        })
    }

    /// Where clients send: give this to the edge as the core's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where datagrams go: the core's real address.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// A handle that changes impairments and reads counters; it may outlive the proxy (then
    /// settings have no effect and [`Control::rebind`] fails).
    pub fn control(&self) -> Control {
        self.control.clone()
    }
}

/// Changes a running proxy's impairments and reads its counters; cheap to clone.
#[derive(Debug, Clone)]
pub struct Control {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Control {
    /// Replaces the impairments of both directions.
    pub fn set(&self, impairments: Impairments) {
        self.shared.state().impairments = impairments;
    }

    /// Replaces the impairments of one direction.
    pub fn set_link(&self, direction: Direction, link: Link) {
        *self.shared.state().impairments.link_mut(direction) = link;
    }

    /// The impairments in force.
    pub fn impairments(&self) -> Impairments {
        self.shared.state().impairments
    }

    /// Drops every datagram, both ways, for `duration` from now (replacing any blackhole
    /// already on); [`Control::heal`] ends it early.
    pub fn blackhole(&self, duration: Duration) {
        self.shared.state().blackhole = Gate::closed_for(duration);
    }

    /// Drops every datagram going `direction` until [`Control::lift`] or [`Control::heal`].
    pub fn stall(&self, direction: Direction) {
        self.shared.state().stall[direction.index()] = Gate::Closed;
    }

    /// Drops every datagram going `direction` for `duration` from now (or until lifted).
    pub fn stall_for(&self, direction: Direction, duration: Duration) {
        self.shared.state().stall[direction.index()] = Gate::closed_for(duration);
    }

    /// Ends a stall of `direction`.
    pub fn lift(&self, direction: Direction) {
        self.shared.state().stall[direction.index()] = Gate::Open;
    }

    /// Ends the blackhole and both stalls; the [`Impairments`] stay as they are.
    pub fn heal(&self) {
        let mut state = self.shared.state();
        state.blackhole = Gate::Open;
        state.stall = [Gate::Open; 2];
    }

    /// Gives every client a new upstream socket on a new port (a NAT rebinding): its next
    /// datagram reaches the upstream from the new address; what the upstream sends to the old
    /// one is lost. Returns how many clients were rebound. Datagrams received after this
    /// returns leave from the new sockets.
    ///
    /// # Errors
    ///
    /// The proxy has stopped (`NotConnected`), or binding a new socket failed (the clients
    /// before it are rebound, the others keep their sockets).
    pub async fn rebind(&self) -> io::Result<usize> {
        let stopped = || io::Error::new(io::ErrorKind::NotConnected, "the proxy has stopped");
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Rebind(reply))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// What happened to the datagrams going `direction` so far.
    pub fn counters(&self, direction: Direction) -> Counters {
        self.shared.counters[direction.index()].snapshot()
    }
}

/// A request to the front task, which owns the clients.
#[derive(Debug)]
enum Command {
    Rebind(oneshot::Sender<io::Result<usize>>),
}

/// Shared between the handle and the tasks.
#[derive(Debug)]
struct Shared {
    /// Locked briefly per datagram and per setting, never across an await.
    state: Mutex<State>,
    counters: [AtomicCounters; 2],
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state is plain data, valid after any panic; a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn counters(&self, direction: Direction) -> &AtomicCounters {
        &self.counters[direction.index()]
    }
}

#[derive(Debug)]
struct State {
    impairments: Impairments,
    blackhole: Gate,
    stall: [Gate; 2],
}

/// Whether a blackhole or a stall drops datagrams now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Open,
    ClosedUntil(Instant),
    Closed,
}

impl Gate {
    fn closed_for(duration: Duration) -> Gate {
        // A duration too long for the clock is forever.
        Instant::now()
            .checked_add(duration)
            .map_or(Gate::Closed, Gate::ClosedUntil)
    }

    fn is_closed(self, now: Instant) -> bool {
        match self {
            Gate::Open => false,
            Gate::ClosedUntil(deadline) => now < deadline,
            Gate::Closed => true,
        }
    }
}

#[derive(Debug, Default)]
struct AtomicCounters {
    received: AtomicU64,
    forwarded: AtomicU64,
    lost: AtomicU64,
    blackholed: AtomicU64,
    stalled: AtomicU64,
    overflowed: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    send_errors: AtomicU64,
}

impl AtomicCounters {
    fn add(counter: &AtomicU64) {
        // SeqCst so that a reader who sees `received` also sees what was counted before it.
        counter.fetch_add(1, Ordering::SeqCst);
    }

    fn snapshot(&self) -> Counters {
        let load = |counter: &AtomicU64| counter.load(Ordering::SeqCst);
        // `received` first: everything counted before it is then visible.
        let received = load(&self.received);
        Counters {
            received,
            forwarded: load(&self.forwarded),
            lost: load(&self.lost),
            blackholed: load(&self.blackholed),
            stalled: load(&self.stalled),
            overflowed: load(&self.overflowed),
            duplicated: load(&self.duplicated),
            reordered: load(&self.reordered),
            send_errors: load(&self.send_errors),
        }
    }
}

/// The four numbers every datagram draws, in this order, whatever its fate: that is what
/// makes the n-th datagram's fate independent of what happened to the ones before.
#[derive(Debug, Clone, Copy)]
struct Draw {
    loss: f64,
    duplicate: f64,
    reorder: f64,
    jitter: f64,
}

impl Draw {
    fn next(rng: &mut StdRng) -> Draw {
        // Field initialisers run in the order written.
        Draw {
            loss: rng.random(),
            duplicate: rng.random(),
            reorder: rng.random(),
            jitter: rng.random(),
        }
    }
}

/// What happens to one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Blackholed,
    Stalled,
    Lost,
    Send {
        deadline: Instant,
        reordered: bool,
        duplicated: bool,
    },
}

/// One direction of one client: its random stream and its ordering.
#[derive(Debug)]
struct Lane {
    direction: Direction,
    rng: StdRng,
    /// When the last datagram that keeps its place leaves; later ones never leave earlier.
    last_deadline: Instant,
    /// This lane's datagrams waiting in the timers: while any wait, a datagram due now must
    /// queue behind them rather than be sent at once.
    waiting: Arc<AtomicUsize>,
}

impl Lane {
    fn new(seed: u64, client: usize, direction: Direction) -> Lane {
        // Multiplying by an odd constant is a bijection, so every (client, direction) gets its
        // own stream; `seed_from_u64` scrambles the result.
        let stream = (client as u64)
            .wrapping_mul(2)
            .wrapping_add(direction.index() as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Lane {
            direction,
            rng: StdRng::seed_from_u64(seed ^ stream),
            last_deadline: Instant::now(),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn decide(&mut self, shared: &Shared, now: Instant) -> Fate {
        let draw = Draw::next(&mut self.rng);
        let (link, blackhole, stall) = {
            let state = shared.state();
            let index = self.direction.index();
            (
                state.impairments.link(self.direction),
                state.blackhole,
                state.stall[index],
            )
        };
        if blackhole.is_closed(now) {
            return Fate::Blackholed;
        }
        if stall.is_closed(now) {
            return Fate::Stalled;
        }
        if draw.loss < link.loss {
            return Fate::Lost;
        }
        let jitter = Duration::try_from_secs_f64(link.jitter.as_secs_f64() * draw.jitter)
            .unwrap_or(MAX_DELAY);
        let delay = link.delay.saturating_add(jitter).min(MAX_DELAY);
        let mut deadline = later(now, delay).max(self.last_deadline);
        let reordered = draw.reorder < link.reorder;
        if reordered {
            deadline = later(deadline, link.reorder_delay.min(MAX_DELAY));
        } else {
            self.last_deadline = deadline;
        }
        Fate::Send {
            deadline,
            reordered,
            duplicated: draw.duplicate < link.duplicate,
        }
    }

    /// Decides the fate of `payload` and carries it out: counts, sends now, or hands it to the
    /// timers to send from `socket` to `to` later.
    async fn forward(
        &mut self,
        shared: &Shared,
        timers: &Timers,
        socket: &Arc<UdpSocket>,
        to: SocketAddr,
        payload: &[u8],
    ) {
        let counters = shared.counters(self.direction);
        let now = Instant::now();
        match self.decide(shared, now) {
            Fate::Blackholed => AtomicCounters::add(&counters.blackholed),
            Fate::Stalled => AtomicCounters::add(&counters.stalled),
            Fate::Lost => AtomicCounters::add(&counters.lost),
            Fate::Send {
                deadline,
                reordered,
                duplicated,
            } => {
                if reordered {
                    AtomicCounters::add(&counters.reordered);
                }
                let copies = if duplicated {
                    AtomicCounters::add(&counters.duplicated);
                    2
                } else {
                    1
                };
                let at_once = deadline <= now && self.waiting.load(Ordering::SeqCst) == 0;
                let payload = Bytes::copy_from_slice(payload);
                for _ in 0..copies {
                    if at_once {
                        send(socket, to, &payload, counters).await;
                    } else {
                        let delayed = Delayed {
                            deadline,
                            order: 0,
                            socket: Arc::clone(socket),
                            to,
                            payload: payload.clone(),
                            waiting: Arc::clone(&self.waiting),
                        };
                        if !timers.schedule(delayed) {
                            AtomicCounters::add(&counters.overflowed);
                        }
                    }
                }
            }
        }
        AtomicCounters::add(&counters.received);
    }
}

/// `now + delay`, or `now` should the clock overflow (it cannot within [`MAX_DELAY`]).
fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay).unwrap_or(now)
}

/// Sends one datagram; a failure is counted, never fatal (UDP promises nothing anyway).
async fn send(socket: &UdpSocket, to: SocketAddr, payload: &[u8], counters: &AtomicCounters) {
    match socket.send_to(payload, to).await {
        Ok(_) => AtomicCounters::add(&counters.forwarded),
        Err(_) => AtomicCounters::add(&counters.send_errors),
    }
}

/// A datagram waiting for its deadline.
#[derive(Debug)]
struct Delayed {
    deadline: Instant,
    /// Arrival order at the timers, so equal deadlines leave first in, first out.
    order: u64,
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    payload: Bytes,
    waiting: Arc<AtomicUsize>,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Delayed) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl Eq for Delayed {}

impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Delayed) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Delayed {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest first.
    fn cmp(&self, other: &Delayed) -> CmpOrdering {
        (other.deadline, other.order).cmp(&(self.deadline, self.order))
    }
}

/// The way into one direction's timer task, which sends delayed datagrams when due. One task
/// per direction rather than one per datagram: bounded, and aborted with the proxy.
#[derive(Debug, Clone)]
struct Timers {
    queue: mpsc::UnboundedSender<Delayed>,
    /// Datagrams scheduled and not yet sent, at most `max`.
    held: Arc<AtomicUsize>,
    max: usize,
}

impl Timers {
    fn start(
        tasks: &mut JoinSet<()>,
        shared: &Arc<Shared>,
        direction: Direction,
        max: usize,
    ) -> Timers {
        let (queue, incoming) = mpsc::unbounded_channel();
        let held = Arc::new(AtomicUsize::new(0));
        tasks.spawn(run_timers(
            Arc::clone(shared),
            direction,
            incoming,
            Arc::clone(&held),
        ));
        Timers { queue, held, max }
    }

    /// Hands `delayed` to the timer task; false (and nothing sent) when full or stopped.
    fn schedule(&self, delayed: Delayed) -> bool {
        // The count is taken before the datagram is queued and given back after it is sent,
        // so the channel, unbounded as it is, never holds more than `max`.
        if self.held.fetch_add(1, Ordering::SeqCst) >= self.max {
            self.held.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        delayed.waiting.fetch_add(1, Ordering::SeqCst);
        let waiting = Arc::clone(&delayed.waiting);
        if self.queue.send(delayed).is_err() {
            self.held.fetch_sub(1, Ordering::SeqCst);
            waiting.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }
}

async fn run_timers(
    shared: Arc<Shared>,
    direction: Direction,
    mut incoming: mpsc::UnboundedReceiver<Delayed>,
    held: Arc<AtomicUsize>,
) {
    let counters = shared.counters(direction);
    let mut heap = BinaryHeap::new();
    let mut order = 0u64;
    loop {
        let next = heap.peek().map(|delayed: &Delayed| delayed.deadline);
        tokio::select! {
            received = incoming.recv() => {
                let Some(mut delayed) = received else { return };
                delayed.order = order;
                order = order.wrapping_add(1);
                heap.push(delayed);
            }
            () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                while heap.peek().is_some_and(|delayed| delayed.deadline <= now) {
                    let Some(delayed) = heap.pop() else { break };
                    send(&delayed.socket, delayed.to, &delayed.payload, counters).await;
                    delayed.waiting.fetch_sub(1, Ordering::SeqCst);
                    held.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }
}

/// A client of the proxy (an edge), known by its source address.
#[derive(Debug)]
struct Client {
    up: Lane,
    /// Its current upstream socket; replaced by a rebinding, watched by its down task.
    socket: watch::Sender<Arc<UdpSocket>>,
}

/// The task reading the listening socket: owns the clients and their down tasks.
#[derive(Debug)]
struct Front {
    socket: Arc<UdpSocket>,
    upstream: SocketAddr,
    seed: u64,
    shared: Arc<Shared>,
    up: Timers,
    down: Timers,
    clients: HashMap<SocketAddr, Client>,
    /// The clients' down tasks, aborted when this task is (dropping the set aborts them).
    tasks: JoinSet<()>,
}

impl Front {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Rebind(reply)) => {
                        // The caller may have given up waiting; nothing to do then.
                        let _ = reply.send(self.rebind().await);
                    }
                    None => return,
                },
                received = self.socket.recv_from(&mut buf) => {
                    // A receive error concerns one datagram (say an ICMP report); the socket
                    // stays usable.
                    if let Ok((len, from)) = received {
                        self.forward_up(from, &buf[..len]).await;
                    }
                }
            }
        }
    }

    async fn forward_up(&mut self, from: SocketAddr, payload: &[u8]) {
        if !self.clients.contains_key(&from) {
            let shared = Arc::clone(&self.shared);
            let counters = shared.counters(Direction::Up);
            if self.clients.len() >= MAX_CLIENTS {
                AtomicCounters::add(&counters.overflowed);
                return;
            }
            if self.add_client(from).await.is_err() {
                // The next datagram from this client tries again.
                AtomicCounters::add(&counters.send_errors);
                return;
            }
        }
        let Some(client) = self.clients.get_mut(&from) else {
            return;
        };
        let socket = Arc::clone(&client.socket.borrow());
        client
            .up
            .forward(&self.shared, &self.up, &socket, self.upstream, payload)
            .await;
    }

    async fn add_client(&mut self, from: SocketAddr) -> io::Result<()> {
        let index = self.clients.len();
        let socket = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?);
        let (sockets, watched) = watch::channel(socket);
        let down = Down {
            sockets: watched,
            upstream: self.upstream,
            front: Arc::clone(&self.socket),
            client: from,
            lane: Lane::new(self.seed, index, Direction::Down),
            shared: Arc::clone(&self.shared),
            timers: self.down.clone(),
        };
        self.tasks.spawn(down.run());
        let client = Client {
            up: Lane::new(self.seed, index, Direction::Up),
            socket: sockets,
        };
        self.clients.insert(from, client);
        Ok(())
    }

    async fn rebind(&self) -> io::Result<usize> {
        for client in self.clients.values() {
            let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
            client.socket.send_replace(Arc::new(socket));
        }
        Ok(self.clients.len())
    }
}

/// The task forwarding one client's down direction: from its upstream socket (whichever is
/// current) to the client, from the listening socket.
#[derive(Debug)]
struct Down {
    sockets: watch::Receiver<Arc<UdpSocket>>,
    upstream: SocketAddr,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    lane: Lane,
    shared: Arc<Shared>,
    timers: Timers,
}

impl Down {
    async fn run(mut self) {
        let mut socket = Arc::clone(&self.sockets.borrow_and_update());
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            tokio::select! {
                changed = self.sockets.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // What is still queued on the old socket is lost, as after a rebinding.
                    socket = Arc::clone(&self.sockets.borrow_and_update());
                }
                received = socket.recv_from(&mut buf) => {
                    // Only the upstream speaks for the core; anything else is not ours to relay.
                    if let Ok((len, from)) = received
                        && from == self.upstream
                    {
                        self.lane
                            .forward(&self.shared, &self.timers, &self.front, self.client, &buf[..len])
                            .await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::future::Future;

    use tokio::task::JoinHandle;

    use super::*;

    /// Long enough for anything expected to arrive on a loaded machine.
    const ARRIVES: Duration = Duration::from_secs(2);
    /// How long we listen for something that must not arrive (the counters have already said
    /// it was dropped, so this only catches a stray send).
    const SILENT: Duration = Duration::from_millis(50);

    /// An upstream that echoes every datagram and reports where each came from.
    struct Echo {
        addr: SocketAddr,
        sources: mpsc::UnboundedReceiver<SocketAddr>,
        task: JoinHandle<()>,
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn echo() -> Echo {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (report, sources) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let _ = report.send(from);
                let _ = socket.send_to(&buf[..len], from).await;
            }
        });
        Echo {
            addr,
            sources,
            task,
        }
    }

    async fn client() -> UdpSocket {
        UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap()
    }

    async fn recv_within(socket: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        match tokio::time::timeout(wait, socket.recv(&mut buf)).await {
            Ok(Ok(len)) => Some(buf[..len].to_vec()),
            _ => None,
        }
    }

    async fn round_trip(socket: &UdpSocket, proxy: &Proxy, payload: &[u8]) -> Vec<u8> {
        socket.send_to(payload, proxy.addr()).await.unwrap();
        recv_within(socket, ARRIVES).await.expect("a reply")
    }

    /// Waits (briefly yielding, so that the proxy's tasks run) until `done` holds.
    async fn wait_until(mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + ARRIVES;
        while !done() {
            assert!(Instant::now() < deadline, "condition not met in time");
            tokio::task::yield_now().await;
        }
    }

    fn counters(proxy: &Proxy, direction: Direction) -> Counters {
        proxy.control().counters(direction)
    }

    async fn received(proxy: &Proxy, direction: Direction, count: u64) {
        wait_until(|| counters(proxy, direction).received >= count).await;
    }

    async fn in_time<F: Future>(test: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(5), test)
            .await
            .expect("the test took too long")
    }

    #[tokio::test]
    async fn forwards_both_ways_with_one_upstream_peer_per_client() {
        in_time(async {
            let mut echo = echo().await;
            let proxy = Proxy::start(echo.addr, 1).await.unwrap();
            let (a, b) = (client().await, client().await);
            assert_eq!(round_trip(&a, &proxy, b"from a").await, b"from a");
            assert_eq!(round_trip(&b, &proxy, b"from b").await, b"from b");
            assert_eq!(round_trip(&a, &proxy, b"again").await, b"again");
            let seen: Vec<SocketAddr> = (0..3).map(|_| echo.sources.try_recv().unwrap()).collect();
            assert_eq!(seen[0], seen[2], "one upstream socket per client");
            assert_ne!(seen[0], seen[1]);
            assert!(!seen.contains(&a.local_addr().unwrap()));
            assert!(!seen.contains(&b.local_addr().unwrap()));
            for direction in [Direction::Up, Direction::Down] {
                let c = counters(&proxy, direction);
                assert_eq!((c.received, c.forwarded, c.dropped()), (3, 3, 0));
            }
        })
        .await;
    }

    #[tokio::test]
    async fn loss_one_drops_everything() {
        in_time(async {
            let mut echo = echo().await;
            let loss = Impairments::symmetric(Link::CLEAN.with_loss(1.0));
            let proxy = Proxy::start_with(echo.addr, 1, loss).await.unwrap();
            let a = client().await;
            for i in 0u8..20 {
                a.send_to(&[i], proxy.addr()).await.unwrap();
            }
            received(&proxy, Direction::Up, 20).await;
            let up = counters(&proxy, Direction::Up);
            assert_eq!((up.lost, up.forwarded), (20, 0));
            assert_eq!(recv_within(&a, SILENT).await, None);
            assert!(echo.sources.try_recv().is_err());
        })
        .await;
    }

    #[tokio::test]
    async fn duplication_one_doubles() {
        in_time(async {
            let echo = echo().await;
            let doubled = Impairments {
                up: Link::CLEAN.with_duplicate(1.0),
                down: Link::CLEAN,
            };
            let proxy = Proxy::start_with(echo.addr, 1, doubled).await.unwrap();
            let a = client().await;
            for i in 0u8..5 {
                a.send_to(&[i], proxy.addr()).await.unwrap();
            }
            let mut replies = Vec::new();
            for _ in 0..10 {
                replies.push(recv_within(&a, ARRIVES).await.expect("a reply")[0]);
            }
            replies.sort_unstable();
            assert_eq!(replies, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
            assert_eq!(recv_within(&a, SILENT).await, None);
            let up = counters(&proxy, Direction::Up);
            assert_eq!((up.received, up.duplicated, up.forwarded), (5, 5, 10));
        })
        .await;
    }

    #[tokio::test]
    async fn delay_is_applied_each_way() {
        in_time(async {
            let echo = echo().await;
            let delayed = Impairments {
                up: Link::CLEAN.with_delay(Duration::from_millis(60)),
                down: Link::CLEAN.with_delay(Duration::from_millis(40)),
            };
            let proxy = Proxy::start_with(echo.addr, 1, delayed).await.unwrap();
            let a = client().await;
            let start = Instant::now();
            assert_eq!(round_trip(&a, &proxy, b"slow").await, b"slow");
            assert!(start.elapsed() >= Duration::from_millis(100));
        })
        .await;
    }

    #[tokio::test]
    async fn jitter_keeps_order_and_reordering_lets_later_datagrams_overtake() {
        in_time(async {
            let echo = echo().await;
            let jittery = Impairments {
                up: Link::CLEAN.with_jitter(Duration::from_millis(20)),
                down: Link::CLEAN,
            };
            let proxy = Proxy::start_with(echo.addr, 3, jittery).await.unwrap();
            let a = client().await;
            for i in 0u8..20 {
                a.send_to(&[i], proxy.addr()).await.unwrap();
            }
            for i in 0u8..20 {
                assert_eq!(recv_within(&a, ARRIVES).await, Some(vec![i]));
            }

            let control = proxy.control();
            let held = Link::CLEAN.with_reorder(1.0, Duration::from_millis(300));
            control.set_link(Direction::Up, held);
            a.send_to(b"first", proxy.addr()).await.unwrap();
            received(&proxy, Direction::Up, 21).await;
            control.set_link(Direction::Up, Link::CLEAN);
            a.send_to(b"second", proxy.addr()).await.unwrap();
            assert_eq!(recv_within(&a, ARRIVES).await.unwrap(), b"second");
            assert_eq!(recv_within(&a, ARRIVES).await.unwrap(), b"first");
            assert_eq!(counters(&proxy, Direction::Up).reordered, 1);
        })
        .await;
    }

    #[tokio::test]
    async fn blackhole_drops_both_ways_for_its_duration() {
        in_time(async {
            // A silent upstream this time, so that it can send down on its own.
            let core = client().await;
            let proxy = Proxy::start(core.local_addr().unwrap(), 1).await.unwrap();
            let a = client().await;
            a.send_to(b"hello", proxy.addr()).await.unwrap();
            let mut buf = [0u8; 16];
            let (_, edge_side) = core.recv_from(&mut buf).await.unwrap();

            let control = proxy.control();
            control.blackhole(Duration::from_millis(500));
            // Taken after the call, so that waiting 500 ms from here outlasts the blackhole.
            let started = Instant::now();
            a.send_to(b"up", proxy.addr()).await.unwrap();
            core.send_to(b"down", edge_side).await.unwrap();
            received(&proxy, Direction::Up, 2).await;
            received(&proxy, Direction::Down, 1).await;
            assert_eq!(counters(&proxy, Direction::Up).blackholed, 1);
            assert_eq!(counters(&proxy, Direction::Down).blackholed, 1);
            assert_eq!(recv_within(&a, SILENT).await, None);
            assert_eq!(recv_within(&core, SILENT).await, None);

            tokio::time::sleep_until(started + Duration::from_millis(500)).await;
            a.send_to(b"up again", proxy.addr()).await.unwrap();
            assert_eq!(recv_within(&core, ARRIVES).await.unwrap(), b"up again");
            core.send_to(b"down again", edge_side).await.unwrap();
            assert_eq!(recv_within(&a, ARRIVES).await.unwrap(), b"down again");
        })
        .await;
    }

    #[tokio::test]
    async fn stall_drops_one_direction_until_lifted() {
        in_time(async {
            let mut echo = echo().await;
            let proxy = Proxy::start(echo.addr, 1).await.unwrap();
            let control = proxy.control();
            let a = client().await;

            control.stall(Direction::Down);
            a.send_to(b"one way", proxy.addr()).await.unwrap();
            received(&proxy, Direction::Down, 1).await;
            assert!(echo.sources.try_recv().is_ok(), "up still flows");
            assert_eq!(counters(&proxy, Direction::Up).forwarded, 1);
            assert_eq!(counters(&proxy, Direction::Down).stalled, 1);
            assert_eq!(recv_within(&a, SILENT).await, None);

            control.lift(Direction::Down);
            assert_eq!(round_trip(&a, &proxy, b"both").await, b"both");

            control.stall_for(Direction::Up, Duration::from_millis(200));
            a.send_to(b"stalled", proxy.addr()).await.unwrap();
            received(&proxy, Direction::Up, 3).await;
            assert_eq!(counters(&proxy, Direction::Up).stalled, 1);
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(round_trip(&a, &proxy, b"after").await, b"after");
        })
        .await;
    }

    #[tokio::test]
    async fn rebind_changes_the_source_port_the_upstream_sees() {
        in_time(async {
            let mut echo = echo().await;
            let proxy = Proxy::start(echo.addr, 1).await.unwrap();
            let a = client().await;
            assert_eq!(round_trip(&a, &proxy, b"before").await, b"before");
            let before = echo.sources.try_recv().unwrap();
            assert_eq!(proxy.control().rebind().await.unwrap(), 1);
            assert_eq!(round_trip(&a, &proxy, b"after").await, b"after");
            let after = echo.sources.try_recv().unwrap();
            assert_eq!(before.ip(), after.ip());
            assert_ne!(before.port(), after.port());
        })
        .await;
    }

    /// Which of 200 datagrams pass a 30 % loss, each sent once the previous one is decided.
    async fn survivors(seed: u64) -> BTreeSet<u32> {
        let core = Arc::new(client().await);
        let proxy = Proxy::start_with(
            core.local_addr().unwrap(),
            seed,
            Impairments::symmetric(Link::CLEAN.with_loss(0.3)),
        )
        .await
        .unwrap();
        // Drained as it comes, so that the upstream's receive buffer never overflows.
        let (found, mut arrived) = mpsc::unbounded_channel();
        let drain = {
            let core = Arc::clone(&core);
            tokio::spawn(async move {
                let mut buf = [0u8; 4];
                while let Ok(len) = core.recv(&mut buf).await {
                    if len == 4 {
                        let _ = found.send(u32::from_be_bytes(buf));
                    }
                }
            })
        };
        let a = client().await;
        for i in 0u32..200 {
            a.send_to(&i.to_be_bytes(), proxy.addr()).await.unwrap();
            received(&proxy, Direction::Up, u64::from(i) + 1).await;
        }
        let forwarded = counters(&proxy, Direction::Up).forwarded;
        let mut passed = BTreeSet::new();
        while (passed.len() as u64) < forwarded {
            let index = tokio::time::timeout(ARRIVES, arrived.recv()).await;
            passed.insert(index.unwrap().unwrap());
        }
        drain.abort();
        assert_eq!(counters(&proxy, Direction::Up).lost, 200 - forwarded);
        passed
    }

    #[tokio::test]
    async fn the_same_seed_drops_the_same_datagrams() {
        in_time(async {
            let first = survivors(42).await;
            assert!(
                (100..180).contains(&first.len()),
                "{} of 200 passed",
                first.len()
            );
            assert_eq!(survivors(42).await, first);
            assert_ne!(survivors(43).await, first);
        })
        .await;
    }

    #[test]
    fn every_datagram_draws_the_same_numbers_whatever_its_fate() {
        let shared = Shared {
            state: Mutex::new(State {
                impairments: Impairments::symmetric(Link::CLEAN.with_loss(0.5)),
                blackhole: Gate::Open,
                stall: [Gate::Open; 2],
            }),
            counters: Default::default(),
        };
        let fates = |blackhole_third: bool| {
            let mut lane = Lane::new(7, 0, Direction::Up);
            (0..30)
                .map(|i| {
                    shared.state().blackhole = if blackhole_third && i == 3 {
                        Gate::Closed
                    } else {
                        Gate::Open
                    };
                    matches!(lane.decide(&shared, lane.last_deadline), Fate::Lost)
                })
                .collect::<Vec<bool>>()
        };
        let clean = fates(false);
        let mut holed = fates(true);
        holed[3] = clean[3];
        assert_eq!(
            clean, holed,
            "a blackholed datagram must not shift the others"
        );
        let other_direction = Lane::new(7, 0, Direction::Down).rng.random::<u64>();
        let other_client = Lane::new(7, 1, Direction::Up).rng.random::<u64>();
        let this_one = Lane::new(7, 0, Direction::Up).rng.random::<u64>();
        assert_ne!(this_one, other_direction);
        assert_ne!(this_one, other_client);
    }

    #[tokio::test]
    async fn datagrams_beyond_the_cap_are_dropped_and_counted() {
        in_time(async {
            let echo = echo().await;
            let slow = Impairments {
                up: Link::CLEAN.with_delay(Duration::from_millis(200)),
                down: Link::CLEAN,
            };
            let proxy = Proxy::start_bounded(echo.addr, 1, slow, 2).await.unwrap();
            let a = client().await;
            for i in 0u8..5 {
                a.send_to(&[i], proxy.addr()).await.unwrap();
            }
            received(&proxy, Direction::Up, 5).await;
            assert_eq!(counters(&proxy, Direction::Up).overflowed, 3);
            assert_eq!(recv_within(&a, ARRIVES).await, Some(vec![0]));
            assert_eq!(recv_within(&a, ARRIVES).await, Some(vec![1]));
        })
        .await;
    }

    #[tokio::test]
    async fn a_dropped_proxy_stops() {
        let echo = echo().await;
        let proxy = Proxy::start(echo.addr, 1).await.unwrap();
        let control = proxy.control();
        drop(proxy);
        assert!(control.rebind().await.is_err());
    }

    #[test]
    fn presets() {
        let rtt = Impairments::rtt_loss(Duration::from_millis(40), 0.01);
        assert_eq!(rtt.up, rtt.down);
        assert_eq!(rtt.up.delay, Duration::from_millis(20));
        assert_eq!(rtt.link(Direction::Down).loss, 0.01);
        assert_eq!(Impairments::default().up, Link::CLEAN);
    }
}
