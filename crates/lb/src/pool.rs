//! Which backend a new connection tries first, and which after that.
//!
//! Health is a hint, not a gate: marks come from a check up to a second old or from one failed
//! connect, and refusing a client on a stale mark would turn a brief blip into an outage for
//! the kubelet. So a connection tries the backends believed healthy first, taking turns among
//! them, and then the ones believed down, in list order, before it gives up.

use std::net::SocketAddr;

/// What is known of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not checked yet; counts as healthy.
    Unknown,
    Up,
    Down,
}

impl Health {
    fn usable(self) -> bool {
        self != Health::Down
    }
}

/// The backends and their health, in the order the caller gave them.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    backends: Vec<(SocketAddr, Health)>,
    turn: usize,
}

impl Pool {
    pub(crate) fn new(backends: Vec<SocketAddr>) -> Self {
        let mut pool = Self::default();
        pool.set(backends);
        pool
    }

    /// Replaces the list; backends that stay keep their health, new ones start unknown, and
    /// a repeated address counts once.
    pub(crate) fn set(&mut self, backends: Vec<SocketAddr>) {
        let mut next: Vec<(SocketAddr, Health)> = Vec::with_capacity(backends.len());
        for addr in backends {
            if next.iter().any(|(known, _)| *known == addr) {
                continue;
            }
            next.push((addr, self.health(addr).unwrap_or(Health::Unknown)));
        }
        self.backends = next;
    }

    pub(crate) fn addresses(&self) -> Vec<SocketAddr> {
        self.backends.iter().map(|(addr, _)| *addr).collect()
    }

    pub(crate) fn health(&self, addr: SocketAddr) -> Option<Health> {
        self.backends
            .iter()
            .find(|(known, _)| *known == addr)
            .map(|(_, health)| *health)
    }

    /// Records a check or connect result; returns the previous health when it changed. An
    /// address no longer in the list is ignored.
    pub(crate) fn mark(&mut self, addr: SocketAddr, up: bool) -> Option<Health> {
        let entry = self.backends.iter_mut().find(|(known, _)| *known == addr)?;
        let now = if up { Health::Up } else { Health::Down };
        let before = std::mem::replace(&mut entry.1, now);
        (before != now).then_some(before)
    }

    /// The order one new connection tries the backends in: the usable ones starting one further
    /// along than the previous connection did, then the ones marked down.
    pub(crate) fn order(&mut self) -> Vec<SocketAddr> {
        let (mut usable, down): (Vec<_>, Vec<_>) = self
            .backends
            .iter()
            .partition(|(_, health)| health.usable());
        if !usable.is_empty() {
            let start = self.turn % usable.len();
            usable.rotate_left(start);
            self.turn = self.turn.wrapping_add(1);
        }
        usable
            .into_iter()
            .chain(down)
            .map(|(addr, _)| addr)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn firsts(pool: &mut Pool, connections: usize) -> Vec<u16> {
        (0..connections).map(|_| pool.order()[0].port()).collect()
    }

    #[test]
    fn connections_take_turns_among_healthy_backends() {
        let mut pool = Pool::new(vec![addr(1), addr(2), addr(3)]);
        assert_eq!(firsts(&mut pool, 6), [1, 2, 3, 1, 2, 3]);
        assert_eq!(
            pool.order(),
            [addr(1), addr(2), addr(3)],
            "after its first choice a connection tries the rest in turn"
        );
    }

    #[test]
    fn a_backend_marked_down_is_tried_last() {
        let mut pool = Pool::new(vec![addr(1), addr(2), addr(3)]);
        pool.mark(addr(2), false);
        assert_eq!(firsts(&mut pool, 4), [1, 3, 1, 3]);
        assert_eq!(pool.order().last(), Some(&addr(2)));
    }

    #[test]
    fn with_every_backend_down_all_are_tried_in_order() {
        let mut pool = Pool::new(vec![addr(1), addr(2)]);
        pool.mark(addr(1), false);
        pool.mark(addr(2), false);
        assert_eq!(pool.order(), [addr(1), addr(2)]);
        assert_eq!(pool.order(), [addr(1), addr(2)]);
    }

    #[test]
    fn a_change_of_health_is_reported_once() {
        let mut pool = Pool::new(vec![addr(1)]);
        assert_eq!(pool.mark(addr(1), true), Some(Health::Unknown));
        assert_eq!(pool.mark(addr(1), true), None);
        assert_eq!(pool.mark(addr(1), false), Some(Health::Up));
        assert_eq!(pool.mark(addr(1), false), None);
        assert_eq!(pool.mark(addr(9), false), None, "not a backend");
    }

    #[test]
    fn a_new_list_keeps_the_health_of_backends_that_stay() {
        let mut pool = Pool::new(vec![addr(1), addr(2)]);
        pool.mark(addr(1), false);
        pool.mark(addr(2), true);
        pool.set(vec![addr(2), addr(3), addr(1), addr(3)]);
        assert_eq!(pool.addresses(), [addr(2), addr(3), addr(1)]);
        assert_eq!(pool.health(addr(1)), Some(Health::Down));
        assert_eq!(pool.health(addr(2)), Some(Health::Up));
        assert_eq!(pool.health(addr(3)), Some(Health::Unknown));
    }

    #[test]
    fn no_backends_means_nothing_to_try() {
        assert!(Pool::new(Vec::new()).order().is_empty());
    }
}
