//! The memory map storage passes the map conformance suite (time moved by a manual clock).

mod map_conformance;

use map_conformance::MapFixture;
use spindle_core::broker::EventHandler;
use spindle_core::clock::ManualClock;
use spindle_core::maps::MemoryMapBroker;
use std::sync::Arc;

async fn memory(handler: Arc<dyn EventHandler>) -> MapFixture<MemoryMapBroker> {
    let clock = Arc::new(ManualClock::new());
    let advance_clock = clock.clone();
    let maps = Arc::new(MemoryMapBroker::new(handler, clock));
    let swept = maps.clone();
    MapFixture {
        maps,
        listen: Arc::new(|_| Box::pin(async {})),
        sweep: Arc::new(move || {
            let removed = swept.sweep();
            Box::pin(async move { removed })
        }),
        advance: Arc::new(move |by| {
            advance_clock.advance(by);
            Box::pin(async {})
        }),
    }
}

map_conformance_tests!(memory);
