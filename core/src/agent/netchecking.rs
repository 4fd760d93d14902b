//! The agent's netcheck sub-machine: at most one run at a time, started by
//! [`Agent::start_netcheck`](super::Agent::start_netcheck), whose report the agent hands to the
//! punch planner and reports as [`Event::NatReport`](super::Event::NatReport).
//!
//! The run shares the agent's sockets (its mapping socket may be an ICE host socket): a
//! datagram is offered to it first and goes on to the relays and ICE unless it answers one of
//! its transactions (by transaction id) or is one of its hairpin probes.

use alloc::boxed::Box;

use crate::io::{Datagram, Deadline, Received, TimerReason, Transmit};
use crate::netcheck::{Behaviour, Netcheck, NetcheckConfig, NetcheckError, Report};
use crate::time::Instant;

/// The run, and its report until the application polls it.
#[derive(Debug, Default)]
pub(super) struct Netchecking {
    run: Option<Netcheck>,
    /// The run's report went to the planner (and into `report`).
    settled: bool,
    /// The finished run's report, waiting to be polled as an event.
    report: Option<Box<Report>>,
    /// Reports replaced by a newer run's before anyone polled them.
    pub(super) reports_dropped: u64,
}

impl Netchecking {
    /// Starts a run at `now` (replacing one in progress): its first requests are due at once.
    pub(super) fn start(
        &mut self,
        now: Instant,
        config: NetcheckConfig,
        seed: u64,
    ) -> Result<(), NetcheckError> {
        let mut run = Netcheck::new(config, seed)?;
        // The start is this input's `now`, not whenever the driver first polls.
        run.handle_timeout(now);
        self.run = Some(run);
        self.settled = false;
        Ok(())
    }

    /// Whether `d` was the run's (an answer to one of its requests, or its hairpin probe).
    pub(super) fn handle_datagram(&mut self, now: Instant, d: Datagram<'_>) -> bool {
        self.run
            .as_mut()
            .is_some_and(|run| run.handle_datagram(now, d) == Received::Consumed)
    }

    /// Advances the run's timers.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        if let Some(run) = &mut self.run {
            run.handle_timeout(now);
        }
    }

    /// Once the run has finished: its mapping behaviour for the planner, the first time only;
    /// the report is kept for [`poll_report`](Self::poll_report).
    pub(super) fn settle(&mut self) -> Option<Behaviour> {
        let run = self.run.as_ref().filter(|r| !self.settled && r.is_done())?;
        self.settled = true;
        let report = run.report();
        let mapping = report.mapping;
        if self.report.replace(Box::new(report)).is_some() {
            self.reports_dropped += 1;
        }
        Some(mapping)
    }

    /// The run's next request, from the socket it names.
    pub(super) fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        self.run.as_mut()?.poll_transmit(now, out)
    }

    /// The finished run's report, once.
    pub(super) fn poll_report(&mut self) -> Option<Box<Report>> {
        self.report.take()
    }

    /// When the run next needs `handle_timeout`; `now` while its report waits to be polled.
    pub(super) fn poll_deadline(&self, now: Instant) -> Option<Deadline> {
        if self.report.is_some() {
            return Some(Deadline::new(now, TimerReason::OutputPending));
        }
        let at = self.run.as_ref()?.poll_deadline()?.at;
        Some(Deadline::new(at, TimerReason::Netcheck))
    }
}
