//! How long the event loop keeps polling after traffic before it sleeps.
//!
//! A frame that arrives while the loop polls is forwarded without a
//! scheduler wake-up; on a VM the wake-up is most of the latency the switch
//! adds (tens of microseconds against the kernel bridge's none). Polling
//! costs CPU, so it must stop when traffic does.
//!
//! - The fixed window (`--busy-poll USECS`, default 200) covers the answer
//!   to what was just forwarded, which usually comes within microseconds.
//! - The adaptive window (`--busy-poll-adaptive MAX_USECS`) also covers
//!   traffic that keeps coming at short, steady gaps (pings every 5 ms, a
//!   paced stream). Of the last [`GAPS`] gaps between wake-ups with
//!   traffic, those that 1.5 times fits in MAX are "short"; while at least
//!   half are short, the loop polls 1.5 times the longest short one. A
//!   pause (a long gap) costs at most one such window and does not end the
//!   adaptation by itself, so a jittery pace (a VM that is late now and
//!   then) keeps it; traffic that turns sparse ends it after
//!   [`GAPS`]/2 + 1 long gaps. Traffic whose gaps are all long (a ping a
//!   second, a scrape every 15 s) never makes it poll beyond the fixed
//!   window.
//!
//! Pure: the loop passes the times in.

use std::time::{Duration, Instant};

/// Gaps remembered.
pub const GAPS: usize = 4;

/// The polling policy and what it has seen.
#[derive(Debug, Clone)]
pub struct BusyPoll {
    fixed: Duration,
    max: Duration,
    last: Option<Instant>,
    gaps: [Duration; GAPS],
    next: usize,
}

impl BusyPoll {
    /// `fixed`: the window after any traffic; `max`: the longest adaptive
    /// window (zero: no adaptation).
    pub fn new(fixed: Duration, max: Duration) -> BusyPoll {
        BusyPoll {
            fixed,
            max,
            last: None,
            // Until gaps are seen, assume they are long.
            gaps: [Duration::MAX; GAPS],
            next: 0,
        }
    }

    /// Traffic was handled at `t`: until when to poll.
    pub fn traffic(&mut self, t: Instant) -> Option<Instant> {
        if let Some(last) = self.last {
            self.gaps[self.next] = t.saturating_duration_since(last);
            self.next = (self.next + 1) % GAPS;
        }
        self.last = Some(t);
        let w = self.window();
        (!w.is_zero()).then(|| t + w)
    }

    /// The window the gaps seen so far ask for.
    pub fn window(&self) -> Duration {
        if self.max.is_zero() {
            return self.fixed;
        }
        let cover = |g: Duration| g.saturating_add(g / 2);
        let short = self.gaps.iter().filter(|g| cover(**g) <= self.max);
        if short.clone().count() * 2 < GAPS {
            return self.fixed;
        }
        short
            .map(|g| cover(*g))
            .max()
            .unwrap_or_default()
            .max(self.fixed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    fn at(t0: Instant, us: u64) -> Instant {
        t0 + US * us as u32
    }

    #[test]
    fn without_adaptation_the_window_is_fixed() {
        let t0 = Instant::now();
        let mut p = BusyPoll::new(200 * US, Duration::ZERO);
        for i in 0..10 {
            assert_eq!(p.traffic(at(t0, i * 5000)), Some(at(t0, i * 5000 + 200)));
        }
        let mut off = BusyPoll::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(off.traffic(t0), None);
    }

    #[test]
    fn steady_pings_are_covered_once_their_pace_is_seen() {
        let t0 = Instant::now();
        let mut p = BusyPoll::new(200 * US, 10_000 * US);
        // Request at 5 ms steps, the reply 50 us later.
        let mut windows = Vec::new();
        for i in 0..6u64 {
            let req = at(t0, i * 5000);
            windows.push(p.traffic(req).unwrap() - req);
            p.traffic(at(t0, i * 5000 + 50));
        }
        // Fixed until two gaps are known, then 1.5 x the 4.95 ms from a
        // reply to the next request.
        assert_eq!(windows[0], 200 * US);
        assert_eq!(windows[1], 7425 * US);
        assert_eq!(windows[2], 7425 * US);
        assert_eq!(windows[5], 7425 * US);
    }

    #[test]
    fn a_pause_costs_one_window_and_sparse_traffic_ends_the_polling() {
        let t0 = Instant::now();
        let mut p = BusyPoll::new(200 * US, 10_000 * US);
        let mut t = 0;
        for _ in 0..8 {
            t += 1000;
            p.traffic(at(t0, t));
        }
        assert_eq!(p.window(), 1500 * US);
        // A late packet (a VM's hiccup) keeps the pace.
        t += 9000;
        assert_eq!(p.traffic(at(t0, t)), Some(at(t0, t + 1500)));
        // Traffic turns sparse: the polling ends after three long gaps.
        t += 1_000_000;
        assert_eq!(p.traffic(at(t0, t)), Some(at(t0, t + 1500)));
        t += 1_000_000;
        assert_eq!(p.traffic(at(t0, t)), Some(at(t0, t + 200)));
        t += 1_000_000;
        assert_eq!(p.traffic(at(t0, t)), Some(at(t0, t + 200)));
    }

    #[test]
    fn gaps_too_long_for_the_maximum_are_never_polled_through() {
        let t0 = Instant::now();
        let mut p = BusyPoll::new(200 * US, 10_000 * US);
        for i in 0..10u64 {
            // 100 packets a second: 1.5 x 10 ms is over the maximum.
            let t = at(t0, i * 10_000);
            assert_eq!(p.traffic(t), Some(t + 200 * US));
        }
    }

    #[test]
    fn a_continuous_stream_keeps_the_fixed_window() {
        let t0 = Instant::now();
        let mut p = BusyPoll::new(200 * US, 10_000 * US);
        for i in 0..100u64 {
            p.traffic(at(t0, i * 3));
        }
        assert_eq!(p.window(), 200 * US);
    }
}
