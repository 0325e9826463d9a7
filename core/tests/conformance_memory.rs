//! The memory broker and presence manager pass the conformance suite (time moved by a manual
//! clock).

mod conformance;

use conformance::{Fixture, PRESENCE_TTL};
use spindle_core::broker::{EventHandler, MemoryBroker};
use spindle_core::clock::ManualClock;
use spindle_core::presence::MemoryPresenceManager;
use std::sync::Arc;

async fn memory(handler: Arc<dyn EventHandler>) -> Fixture<MemoryBroker, MemoryPresenceManager> {
    let clock = Arc::new(ManualClock::new());
    let advance_clock = clock.clone();
    Fixture {
        broker: Arc::new(MemoryBroker::new(handler, clock.clone())),
        presence: MemoryPresenceManager::new(clock, PRESENCE_TTL),
        advance: Arc::new(move |by| {
            advance_clock.advance(by);
            Box::pin(async {})
        }),
    }
}

conformance_tests!(memory);
