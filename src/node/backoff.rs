//! Exponential backoff with jitter between retries to a failing node.

use std::time::Duration;

/// Doubles from `initial` to `max`; each wait is drawn from the upper half of the current step, so
/// gateways retrying the same node do not fall into step.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Option<Duration>,
}

impl Backoff {
    /// A backoff that has not failed yet.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            step: None,
        }
    }

    /// The wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let step = match self.step {
            None => self.initial,
            Some(step) => (step * 2).min(self.max),
        };
        self.step = Some(step);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Back to `initial` after a success.
    pub fn reset(&mut self) {
        self.step = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let steps: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        let bounds = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (delay, bound) in steps.iter().zip(bounds) {
            let bound = Duration::from_millis(bound);
            assert!(
                *delay >= bound / 2 && *delay <= bound,
                "{delay:?} not in [{:?}, {bound:?}]",
                bound / 2
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
